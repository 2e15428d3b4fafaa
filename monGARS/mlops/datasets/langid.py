"""Offline language identification: function-word and character-trigram profiles, no downloads.

Each candidate language has a list of frequent function words and a character-trigram profile
built at import time from those words and a short reference paragraph written for this module.
A text scores, per language, the share of its words that are that language's function words
(words shared by several languages count less) plus the cosine similarity of its trigram profile.
French is accepted when it wins clearly; English, Spanish, German, Italian, Portuguese and Dutch
are there so that rows in those languages lose to their own profile instead of slipping through.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain

import numpy as np

_STOPWORDS: dict[str, str] = {
    "fr": """le la les l un une des du de d et en est sont à au aux ce cet cette ces qui que qu
        quoi dont où ne n pas plus pour par sur dans avec sans sous entre il elle ils elles on
        nous vous je j tu me m te t se s lui leur leurs son sa ses mon ma mes ton ta tes notre
        votre nos vos y été être avoir ont a ai as avons avez était étaient sera seront fait
        faire peut peuvent doit comme mais ou donc car si aussi très bien tout tous toute toutes
        même quand comment pourquoi quel quelle quels quelles c ça cela ceci celui celle ceux
        lorsque puis alors ainsi chaque autre autres moins entre vers chez selon après avant
        encore déjà non oui ici là deux trois premier première""",
    "en": """the a an and or of to in on at by for with from is are was were be been being has
        have had do does did not no yes this that these those it its they them their there here
        which who whom whose what when where why how i you he she we me him her us my your his
        our can could will would should shall may might must as if then than so but also very
        all any some each other into about over after before between through during up down out
        just only more most such own same too again once both few off while because until""",
    "es": """el la los las un una unos unas y o de del al a en es son ser fue fueron era eran
        está están estar que qué quien quién cual cuál como cómo cuando cuándo donde dónde por
        para con sin sobre entre hasta desde no sí se su sus lo le les me te nos os mi mis tu
        tus yo él ella ellos ellas nosotros usted ustedes este esta estos estas ese esa esos esas
        muy más pero porque también hay ha han he había tiene tienen puede pueden todo todos toda
        todas cada otro otra otros ya aunque mientras entonces así""",
    "de": """der die das den dem des ein eine einer eines einem einen und oder aber nicht kein
        keine ist sind war waren sein wird werden wurde hat haben hatte zu zum zur im in an am
        auf aus bei mit nach von vor über unter für durch gegen ohne um als wie wenn dass ob weil
        ich du er sie es wir ihr mich dich sich uns euch mein dein sein unser euer ihre diese
        dieser dieses jeder jede auch noch nur schon sehr mehr kann können muss müssen soll
        sollen will wollen man hier dort dann denn doch wo was wer warum wann welche""",
    "it": """il lo la i gli le un uno una di del della dello dei degli delle da dal dalla in nel
        nella nei con su sul sulla per tra fra e ed o ma che chi cui non è sono era erano essere
        stato stata ha hanno avere aveva questo questa questi queste quello quella si ci ne mi
        ti vi lui lei noi voi loro suo sua suoi sue mio mia anche come quando dove perché più
        molto tutto tutti tutta ogni altro altra ancora già così poi sempre solo""",
    "pt": """o a os as um uma uns umas de do da dos das em no na nos nas por pelo pela para com
        sem sobre entre até e ou mas que quem qual como quando onde porque não sim se seu sua
        seus suas ele ela eles elas eu você vocês nós me te lhe nosso nossa este esta estes estas
        esse essa isso isto aquele muito mais também já foi foram ser é são estar está estão tem
        têm ter há pode podem todo todos toda todas cada outro outra ainda então assim""",
    "nl": """de het een en of maar niet geen is zijn was waren wordt worden werd heeft hebben had
        te van in op aan met voor door over onder naar uit bij om tot tegen zonder als dan dat
        die dit deze wie wat waar waarom wanneer hoe ik jij je hij zij ze wij we jullie mij mijn
        jouw zijn haar ons onze hun ook nog al wel heel meer kan kunnen moet moeten zal zullen
        wil willen er hier daar want omdat""",
}

# Short reference paragraphs (written for this module) that give each profile its letter shapes.
_REFERENCE: dict[str, str] = {
    "fr": """Le modèle apprend à partir des exemples que nous lui donnons pendant l'entraînement.
        Chaque semaine, les chercheurs publient de nouveaux résultats sur la compréhension du
        langage et sur la génération de textes. La ville de Lyon se trouve au confluent du Rhône
        et de la Saône ; elle est célèbre pour sa cuisine et ses traboules. Il faut vérifier que
        les données sont propres, équilibrées et représentatives avant de lancer l'évaluation.
        Pourquoi les élèves préfèrent-ils travailler ensemble ? Parce qu'ils s'entraident et
        échangent leurs idées. Cette fonction renvoie la liste des fichiers trouvés dans le
        dossier, triée par ordre alphabétique, ainsi que leur taille en octets.""",
    "en": """The model learns from the examples we give it during training. Every week,
        researchers publish new results about language understanding and text generation. The
        city of London stands on the river Thames and is famous for its museums and its old
        bridges. You should check that the data is clean, balanced and representative before you
        start the evaluation. Why do students prefer working together? Because they help each
        other and share their ideas. This function returns the list of files found in the
        folder, sorted alphabetically, along with their size in bytes.""",
    "es": """El modelo aprende de los ejemplos que le damos durante el entrenamiento. Cada
        semana, los investigadores publican nuevos resultados sobre la comprensión del lenguaje y
        la generación de textos. La ciudad de Sevilla está junto al río Guadalquivir y es famosa
        por su catedral y sus fiestas. Hay que comprobar que los datos están limpios,
        equilibrados y son representativos antes de empezar la evaluación. ¿Por qué los alumnos
        prefieren trabajar juntos? Porque se ayudan y comparten sus ideas. Esta función devuelve
        la lista de archivos encontrados en la carpeta, ordenada alfabéticamente.""",
    "de": """Das Modell lernt aus den Beispielen, die wir ihm während des Trainings geben. Jede
        Woche veröffentlichen die Forscher neue Ergebnisse über das Sprachverständnis und die
        Erzeugung von Texten. Die Stadt München liegt an der Isar und ist für ihre Museen und
        ihren Biergarten bekannt. Man muss prüfen, ob die Daten sauber, ausgewogen und
        repräsentativ sind, bevor man mit der Auswertung beginnt. Warum arbeiten die Schüler
        lieber zusammen? Weil sie sich gegenseitig helfen und ihre Ideen austauschen. Diese
        Funktion gibt die Liste der gefundenen Dateien im Ordner zurück, alphabetisch sortiert.""",
    "it": """Il modello impara dagli esempi che gli diamo durante l'addestramento. Ogni
        settimana i ricercatori pubblicano nuovi risultati sulla comprensione del linguaggio e
        sulla generazione di testi. La città di Firenze si trova sull'Arno ed è famosa per i suoi
        musei e le sue chiese. Bisogna verificare che i dati siano puliti, equilibrati e
        rappresentativi prima di cominciare la valutazione. Perché gli studenti preferiscono
        lavorare insieme? Perché si aiutano e condividono le loro idee. Questa funzione
        restituisce l'elenco dei file trovati nella cartella, in ordine alfabetico.""",
    "pt": """O modelo aprende com os exemplos que lhe damos durante o treinamento. Todas as
        semanas, os pesquisadores publicam novos resultados sobre a compreensão da linguagem e a
        geração de textos. A cidade de Lisboa fica junto ao rio Tejo e é famosa pelos seus
        elétricos e pelas suas colinas. É preciso verificar que os dados estão limpos,
        equilibrados e representativos antes de começar a avaliação. Por que os alunos preferem
        trabalhar juntos? Porque se ajudam e partilham as suas ideias. Esta função devolve a
        lista de ficheiros encontrados na pasta, ordenada alfabeticamente.""",
    "nl": """Het model leert van de voorbeelden die we het tijdens de training geven. Elke week
        publiceren onderzoekers nieuwe resultaten over taalbegrip en het genereren van teksten.
        De stad Amsterdam ligt aan het IJ en is beroemd om haar grachten en musea. Je moet
        controleren of de gegevens schoon, evenwichtig en representatief zijn voordat je met de
        evaluatie begint. Waarom werken leerlingen liever samen? Omdat ze elkaar helpen en hun
        ideeën delen. Deze functie geeft de lijst van gevonden bestanden in de map terug,
        alfabetisch gesorteerd.""",
}

SUPPORTED_LANGUAGES = tuple(sorted(_STOPWORDS))
TRIGRAM_WEIGHT = 0.5
_LETTERS = re.compile(r"[^\W\d_]+", re.UNICODE)
# Mixed-case identifiers and dotted names are code, not language evidence.
_CAMEL = re.compile(r"[a-z][A-Z]")
_JOINED = re.compile(r"\w[._]\w")
_BACKTICKS = re.compile(r"`[^`\n]*`")
# Quoted passages are often the material a French instruction is about (text to translate or
# correct), so they are not evidence of the record's own language.
_QUOTED = re.compile(r"«[^»\n]{0,400}»|“[^”\n]{0,400}”|\"[^\"\n]{0,400}\"")


@lru_cache(maxsize=65536)
def _word_trigrams(token: str) -> tuple[str, ...]:
    padded = f" {token} "
    return tuple(padded[start : start + 3] for start in range(len(padded) - 2))


def _trigrams(tokens: list[str]) -> Counter[str]:
    """Character trigrams of the words, each padded with a space on both sides."""
    return Counter(chain.from_iterable(map(_word_trigrams, tokens)))


@dataclass(frozen=True)
class _Tables:
    """Per-language weights as matrices, so a text is scored for every language in one product."""

    languages: tuple[str, ...]
    stop_index: dict[str, int]
    stop_weights: np.ndarray  # (words, languages): 1/k for a word in k languages' lists
    gram_index: dict[str, int]
    gram_weights: np.ndarray  # (trigrams, languages): unit-normalised profile per column


@lru_cache(maxsize=1)
def _tables() -> _Tables:
    languages = tuple(sorted(_STOPWORDS))
    sets = {lang: set(_STOPWORDS[lang].split()) for lang in languages}
    shared: Counter[str] = Counter(word for words in sets.values() for word in words)
    stop_index = {word: i for i, word in enumerate(sorted(shared))}
    stop_weights = np.zeros((len(stop_index), len(languages)))
    profiles = []
    for column, lang in enumerate(languages):
        for word in sets[lang]:
            stop_weights[stop_index[word], column] = 1.0 / shared[word]
        tokens = _LETTERS.findall(_REFERENCE[lang].casefold()) + sorted(sets[lang])
        profiles.append(_trigrams(tokens))
    gram_index = {gram: i for i, gram in enumerate(sorted(set().union(*profiles)))}
    gram_weights = np.zeros((len(gram_index), len(languages)))
    for column, counts in enumerate(profiles):
        for gram, value in counts.items():
            gram_weights[gram_index[gram], column] = value
    gram_weights /= np.linalg.norm(gram_weights, axis=0, keepdims=True)
    return _Tables(languages, stop_index, stop_weights, gram_index, gram_weights)


@dataclass(frozen=True)
class LanguageGuess:
    """The best language, its score, and the margin over the runner-up (0 when unknown)."""

    language: str
    score: float
    margin: float
    scores: dict[str, float]


def _is_code(chunk: str) -> bool:
    # Fast path: most words are lowercase and hold no "_" or "." inside.
    if chunk.islower() and "_" not in chunk and "." not in chunk.rstrip(".…"):
        return False
    return bool(_CAMEL.search(chunk) or _JOINED.search(chunk))


def prose_tokens(text: str) -> list[str]:
    """Letter-only words of ``text``, without code identifiers (nor quotes, if prose remains).

    camelCase names, dotted or snake_case names and `backticked` spans are code, whatever the
    language of the sentence around them.
    """
    chunks = _BACKTICKS.sub(" ", text).split()
    prose = " ".join(chunk for chunk in chunks if not _is_code(chunk))
    unquoted = _LETTERS.findall(_QUOTED.sub(" ", prose).casefold())
    return unquoted or _LETTERS.findall(prose.casefold())


def _weighted_sum(counts: Counter[str], index: dict[str, int], weights: np.ndarray) -> np.ndarray:
    rows, values = [], []
    for key, count in counts.items():
        row = index.get(key)
        if row is not None:
            rows.append(row)
            values.append(count)
    if not rows:
        return np.zeros(weights.shape[1])
    return np.asarray(values, dtype=np.float64) @ weights[rows]


def identify(text: str) -> LanguageGuess:
    """Score every supported language; ``language`` is ``"unknown"`` when there are no words."""
    tokens = prose_tokens(text)
    if not tokens:
        return LanguageGuess("unknown", 0.0, 0.0, {})
    tables = _tables()
    stop = _weighted_sum(Counter(tokens), tables.stop_index, tables.stop_weights) / len(tokens)
    grams = _trigrams(tokens)
    norm = math.sqrt(sum(value * value for value in grams.values()))
    cosine = _weighted_sum(grams, tables.gram_index, tables.gram_weights) / norm
    totals = stop + TRIGRAM_WEIGHT * cosine
    scores = {lang: float(value) for lang, value in zip(tables.languages, totals, strict=True)}
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    (best, best_score), (_, second_score) = ranked[0], ranked[1]
    margin = (best_score - second_score) / best_score if best_score > 0 else 0.0
    return LanguageGuess(best, best_score, margin, scores)


def is_language(text: str, languages: tuple[str, ...] | list[str], min_margin: float) -> bool:
    """True when the best guess is one of ``languages`` and beats the runner-up by ``min_margin``.

    The margin is relative ((best - second) / best), so it means the same for short and long texts.
    """
    guess = identify(text)
    return guess.language in languages and guess.margin >= min_margin
