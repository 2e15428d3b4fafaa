"""Regenerate the labelled language-identification benchmark (tests/fixtures/langid/bench.jsonl).

Two sources, one JSON object per line: ``{"text", "lang", "source", "shape"}``.

* ``gettext:<domain>`` — the message catalogues that Debian packages install under
  ``/usr/share/locale/<lang>/LC_MESSAGES/<domain>.mo``: each msgid (English) translated by the
  package's translators into fr, es, de, it, pt (``pt`` and ``pt_BR``) and nl. Rows are short
  interface strings, help lines and error messages, so they hold what real short records hold:
  option names, ``%s`` placeholders, file names, numbers, product names. The ``.mo`` files are
  read with the parser below (the layout is the one GNU gettext documents: magic, count, two
  tables of (length, offset) pairs). A translation equal to its msgid is left out (untranslated),
  and so are the ``iso_*`` catalogues (lists of names, not text).
* ``written`` — short texts written for this benchmark, in the shapes a French instruction corpus
  holds and interface strings rarely do: French that quotes another language (translation and
  correction requests), French around code identifiers, numbers and foreign named entities, and
  a few texts in the other languages that quote French.

Texts are 10–300 characters, whitespace-collapsed, GTK/Qt mnemonics (``_Fichier``, ``&File``)
removed; a text that appears under two labels is dropped, the rest deduplicated on case-folded
text. Selection is seeded and round-robin over catalogues so no package dominates.

    python bench/make_langid_bench.py [--locale-dir /usr/share/locale] [--seed 0]

Needs the catalogues installed (a Debian/Ubuntu machine with the packages that ship them); the
tests and ``bench/bench_langid.py`` only read the shipped JSONL.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import struct
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "langid" / "bench.jsonl"
# Catalogue folders per label; Portuguese takes both the European and the Brazilian catalogues.
LOCALES = {
    "fr": ["fr"],
    "es": ["es"],
    "de": ["de"],
    "it": ["it"],
    "pt": ["pt", "pt_BR"],
    "nl": ["nl"],
}
# Rows per label taken from the catalogues (French, the language kept, gets the most).
QUOTA = {"fr": 900, "en": 300, "es": 260, "de": 260, "it": 260, "pt": 260, "nl": 260}
MIN_CHARS, MAX_CHARS = 10, 300
_MNEMONIC = re.compile(r"(?<![\w_])_(?=\w)|&(?=\w)")
_SPACES = re.compile(r"\s+")
_LETTER = re.compile(r"[^\W\d_]")

# ---- written rows ------------------------------------------------------------------------
# French that quotes other languages (what a translation or correction request looks like).
FR_QUOTES = [
    "Comment dit-on « thank you » en français ?\nOn dit « merci » en français.",
    "Comment dit-on « see you soon » en français ?\nOn dit « à bientôt ».",
    "Traduis « good morning, everyone » en français.",
    "Que veut dire « break a leg » ? C'est une façon de souhaiter bonne chance.",
    "Traduis en anglais : « Je suis en retard ».\nI am late.",
    "En espagnol, « buenas noches » se dit le soir, avant d'aller dormir.",
    "L'expression allemande « Guten Appetit » correspond à notre « bon appétit ».",
    "« Ciao » sert en italien à dire bonjour comme au revoir.",
    "Le mot portugais « saudade » n'a pas d'équivalent exact en français.",
    "En néerlandais, « gezellig » décrit une ambiance chaleureuse et conviviale.",
    "Corrige la phrase anglaise « he go to school every days » et explique l'erreur.",
    "Quelle est la différence entre « since » et « for » en anglais ?",
    'Traduis "Where is the train station?" en français, s\'il te plaît.',
    'Le titre anglais "The Lord of the Rings" est traduit par "Le Seigneur des anneaux".',
    "Que signifie « carpe diem » ? Profite du jour présent.",
    "Le slogan « Just do it » a-t-il été traduit en français ?",
    "Comment prononce-t-on « Wednesday » ? On ne prononce pas le premier d.",
    "Peux-tu traduire « ¿Dónde está la biblioteca? » en français ?",
    "La réponse en anglais est « I don't know », soit « je ne sais pas ».",
    "Donne trois synonymes de « happy » et leur traduction en français.",
    "Le verbe « to be » se conjugue : I am, you are, he is.",
    "Dans la chanson, le refrain « let it be » revient à chaque couplet.",
    "Explique le sens de « Schadenfreude », un mot emprunté à l'allemand.",
    "Pourquoi dit-on « week-end » en France et « fin de semaine » au Québec ?",
    "Traduis « o livro está em cima da mesa » du portugais vers le français.",
    "Comment traduire « on the other hand » dans un texte formel ?",
    "« Dank je wel » veut dire merci en néerlandais.",
    "La devise des Pays-Bas, « Je maintiendrai », est écrite en français.",
    "Réécris « I would like a coffee, please » de façon plus polie en français.",
    "Que répondre à « How are you doing? » dans un courriel professionnel ?",
    "Il a écrit « thanks a lot » au lieu de « merci beaucoup ».",
    "« Mañana » ne veut pas toujours dire demain, parfois plus tard.",
    "Le film « Das Boot » raconte la vie d'un équipage de sous-marin.",
    "Le proverbe italien « chi va piano va sano e va lontano » prône la patience.",
    "Traduis « the quick brown fox jumps over the lazy dog ».\nLe rapide renard brun saute "
    "par-dessus le chien paresseux.",
    "Quel est le féminin de « actor » en anglais ? C'est « actress ».",
    "Faut-il écrire « e-mail » ou « courriel » dans une lettre officielle ?",
    "Elle a répondu « no problem » avec un accent parfait.",
    "L'enseigne affichait « open 24/7 », c'est-à-dire ouvert jour et nuit.",
    "Le message d'erreur dit « file not found » : le fichier est introuvable.",
]
# French around code identifiers and commands.
FR_CODE = [
    "Utilise `df.groupby('ville').mean()` pour calculer la moyenne par ville.",
    "La fonction read_csv de pandas lit un fichier CSV dans un DataFrame.",
    "Pourquoi `git rebase -i HEAD~3` ouvre-t-il un éditeur ?",
    "Appelle AutoTokenizer.from_pretrained avant de charger le modèle.",
    "Le hook useEffect s'exécute après chaque rendu du composant.",
    "Ajoute un fichier __init__.py pour que le dossier devienne un paquet.",
    "La commande kubectl get pods liste les pods de l'espace de noms courant.",
    "Dans ce script, la variable max_retries vaut 5 par défaut.",
    "Renvoie None quand la clé n'existe pas dans le dictionnaire.",
    "Écris une fonction is_palindrome(s) qui renvoie True si s est un palindrome.",
    "Le champ created_at est stocké en UTC dans la base PostgreSQL.",
    "Remplace print par logger.info dans tout le module.",
    "Lance `pip install -e .` depuis la racine du dépôt.",
    "Que fait `SELECT COUNT(*) FROM users WHERE active = 1` ?",
    "La méthode torch.no_grad() désactive le calcul des gradients.",
    "Le test test_parse_date échoue depuis la mise à jour de dateutil.",
    "Configure CUDA_VISIBLE_DEVICES=0 pour n'utiliser que le premier GPU.",
    "Le décorateur @lru_cache garde en mémoire les résultats déjà calculés.",
    "Dans React, setState est asynchrone : ne lis pas l'état juste après.",
    "Déclare l'interface UserRepository puis implémente-la avec JpaRepository.",
    "L'option --dry-run affiche les changements sans les appliquer.",
    "Le fichier docker-compose.yml définit trois services : web, db et cache.",
    "Pourquoi mon appel à fetch() renvoie-t-il une promesse en attente ?",
    "Exporte la variable PATH dans ~/.bashrc pour la garder après redémarrage.",
    "La classe HttpClient de .NET doit être réutilisée, pas recréée à chaque requête.",
    "Avec numpy.linalg.solve, on résout le système sans inverser la matrice.",
    "Mets le seuil near_dup_threshold à 0,8 dans la configuration.",
    "Renomme la branche main en trunk avec git branch -m.",
    "Le paramètre batch_size=32 ne tient pas en mémoire sur cette carte.",
    "Quelle est la différence entre == et is en Python ?",
]
# French with numbers, dates, amounts and units.
FR_NUMBERS = [
    "Le train part à 14 h 35 du quai 7 et arrive à 18 h 02.",
    "La facture s'élève à 1 249,90 € TTC, payable sous 30 jours.",
    "En 2023, la population de Lyon dépassait 520 000 habitants.",
    "Le taux de réussite est passé de 72 % à 81 % en deux ans.",
    "Multiplie 12 par 7, puis retire 15 : le résultat est 69.",
    "La version 3.11 de Python est sortie le 24 octobre 2022.",
    "Il faut 250 g de farine, 3 œufs et 50 cl de lait.",
    "Le colis pèse 2,4 kg et mesure 40 × 30 × 20 cm.",
    "Combien font 15 % de 480 ? Réponse : 72.",
    "La réunion est déplacée au mardi 12 mars à 9 h 30.",
    "Le modèle compte 7 milliards de paramètres et tient sur 16 Go.",
    "Entre 1789 et 1799, la France change plusieurs fois de régime.",
    "La température a atteint 41,2 °C le 28 juin 2019.",
    "Note : 17/20 en mathématiques et 14,5/20 en physique.",
    "Le marathon fait 42,195 km ; son record est sous les 2 h 01.",
]
# French with foreign named entities (places, organisations, works, people).
FR_ENTITIES = [
    "Le Rijksmuseum d'Amsterdam expose La Ronde de nuit de Rembrandt.",
    "Le Real Madrid a battu le FC Barcelona au stade Santiago Bernabéu.",
    "Il a étudié à la Universidad de Buenos Aires avant de rejoindre le CNRS.",
    "Le New York Times a publié une enquête sur Silicon Valley Bank.",
    "Frankfurt am Main abrite la Banque centrale européenne.",
    "Nous avons visité la Galleria degli Uffizi à Florence.",
    "Le Palácio da Pena domine la ville de Sintra, près de Lisbonne.",
    "Microsoft et OpenAI ont annoncé un nouvel accord mardi dernier.",
    "La Deutsche Bahn annonce des retards sur la ligne Berlin–Hamburg.",
    "Le festival South by Southwest se tient chaque année à Austin.",
    "Angela Merkel a dirigé le gouvernement allemand pendant seize ans.",
    "La série Stranger Things se déroule dans la ville fictive de Hawkins.",
    "Le groupe Coldplay jouera au Stade de France les 15 et 16 juillet.",
    "Het Concertgebouw est la grande salle de concert d'Amsterdam.",
    "Le roman Cien años de soledad a été écrit par Gabriel García Márquez.",
    "L'université de Cambridge a été fondée au début du XIIIe siècle.",
    "Le Mobile World Congress a lieu chaque année à Barcelone.",
    "Il travaille chez Volkswagen à Wolfsburg depuis 2015.",
    "Le Corriere della Sera est un quotidien milanais fondé en 1876.",
    "Google DeepMind a présenté AlphaFold lors de la conférence CASP.",
]
# Other languages quoting French: still the other language, so the filter must drop them.
FOREIGN_QUOTES = {
    "en": [
        "How do you say « thank you » in French? You say « merci ».",
        "The French phrase « je ne sais quoi » has no exact English equivalent.",
        "She ordered a « croissant » and a « café au lait » at the counter.",
        "What does « c'est la vie » mean, and when do people use it?",
        "Translate « le chat est sur la table » into English.",
        "The menu listed « coq au vin » and « crème brûlée » as specials.",
    ],
    "es": [
        "¿Cómo se dice « gracias » en francés? Se dice « merci ».",
        "La expresión francesa « déjà vu » se usa también en español.",
        "Pidió un « croissant » y un café con leche en la barra.",
    ],
    "de": [
        "Wie sagt man « danke » auf Französisch? Man sagt « merci ».",
        "Der Ausdruck « savoir-vivre » stammt aus dem Französischen.",
        "Sie bestellte ein « pain au chocolat » und einen Kaffee.",
    ],
    "it": [
        "Come si dice « grazie » in francese? Si dice « merci ».",
        "L'espressione francese « bon vivant » si usa anche in italiano.",
        "Ha ordinato un « croissant » e un cappuccino al bancone.",
    ],
    "pt": [
        "Como se diz « obrigado » em francês? Diz-se « merci ».",
        "A expressão francesa « à la carte » também se usa em português.",
        "Ela pediu um « croissant » e um café com leite no balcão.",
    ],
    "nl": [
        "Hoe zeg je « dank je » in het Frans? Je zegt « merci ».",
        "De Franse uitdrukking « joie de vivre » gebruiken we ook in het Nederlands.",
        "Ze bestelde een « croissant » en een koffie aan de bar.",
    ],
}


def read_mo(path: Path) -> dict[str, str]:
    """msgid -> msgstr of a compiled gettext catalogue (context and plural forms flattened)."""
    data = path.read_bytes()
    if len(data) < 28:
        return {}
    for order in ("<", ">"):
        magic, _revision, count, ids_at, strs_at = struct.unpack(order + "5I", data[:20])
        if magic == 0x950412DE:
            break
    else:
        return {}
    charset = "utf-8"
    pairs: dict[str, str] = {}
    for index in range(count):
        id_len, id_at = struct.unpack_from(order + "2I", data, ids_at + 8 * index)
        str_len, str_at = struct.unpack_from(order + "2I", data, strs_at + 8 * index)
        raw_id, raw_str = data[id_at : id_at + id_len], data[str_at : str_at + str_len]
        if not raw_id:  # the header entry names the charset
            found = re.search(rb"charset=([\w-]+)", raw_str)
            charset = found.group(1).decode("ascii") if found else charset
            continue
        try:
            msgid, msgstr = raw_id.decode(charset), raw_str.decode(charset)
        except (UnicodeDecodeError, LookupError):
            continue
        msgid = msgid.split("\x04")[-1].split("\x00")[0]  # drop msgctxt, keep the singular
        msgstr = msgstr.split("\x00")[0]
        if msgstr:
            pairs[msgid] = msgstr
    return pairs


def tidy(text: str) -> str:
    """One-line text without mnemonics or runs of spaces."""
    return _SPACES.sub(" ", _MNEMONIC.sub("", text)).strip()


def usable(text: str) -> bool:
    return MIN_CHARS <= len(text) <= MAX_CHARS and len(_LETTER.findall(text)) >= 4


def gettext_rows(locale_dir: Path) -> dict[str, dict[str, list[str]]]:
    """label -> domain -> candidate texts."""
    rows: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for label, folders in LOCALES.items():
        for folder in folders:
            for path in sorted((locale_dir / folder / "LC_MESSAGES").glob("*.mo")):
                domain = path.stem
                if domain.startswith("iso_"):
                    continue
                for msgid, msgstr in read_mo(path).items():
                    source, target = tidy(msgid), tidy(msgstr)
                    if target.casefold() == source.casefold():
                        continue  # untranslated
                    if usable(target):
                        rows[label][domain].append(target)
                    if usable(source):
                        rows["en"][domain].append(source)
    return rows


def packages_of(locale_dir: Path, domains: set[str]) -> dict[str, str]:
    """The Debian package that installed each catalogue (for the licence note), else the domain."""
    owners = {domain: domain for domain in domains}
    paths = {
        str(p): p.stem for p in sorted(locale_dir.glob("*/LC_MESSAGES/*.mo")) if p.stem in owners
    }
    try:
        found = subprocess.run(["dpkg", "-S", *paths], capture_output=True, text=True)
    except OSError:
        return owners
    for line in found.stdout.splitlines():
        package, _, path = line.partition(": ")
        if path.strip() in paths:
            owners[paths[path.strip()]] = package.split(",")[0].split(":")[0].strip()
    return owners


def round_robin(rng: random.Random, by_domain: dict[str, list[str]], quota: int) -> list[tuple]:
    pools = {domain: sorted(set(texts)) for domain, texts in sorted(by_domain.items())}
    for texts in pools.values():
        rng.shuffle(texts)
    picked: list[tuple[str, str]] = []
    while len(picked) < quota and any(pools.values()):
        for domain, texts in pools.items():
            if texts and len(picked) < quota:
                picked.append((domain, texts.pop()))
    return picked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--locale-dir", type=Path, default=Path("/usr/share/locale"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not (args.locale_dir / "fr" / "LC_MESSAGES").is_dir():
        print(f"--locale-dir: no fr/LC_MESSAGES under {args.locale_dir}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    candidates = gettext_rows(args.locale_dir)
    # A text found under two labels (shared product names, untranslated fragments) is ambiguous.
    labels: dict[str, set[str]] = defaultdict(set)
    for label, by_domain in candidates.items():
        for texts in by_domain.values():
            for text in texts:
                labels[text.casefold()].add(label)
    written = [
        ("fr", shape, text)
        for shape, texts in (
            ("quote", FR_QUOTES),
            ("code", FR_CODE),
            ("number", FR_NUMBERS),
            ("entity", FR_ENTITIES),
        )
        for text in texts
    ] + [(label, "quote", text) for label, texts in FOREIGN_QUOTES.items() for text in texts]
    seen: set[str] = set()
    rows = []
    for label, shape, text in written:
        text = tidy(text) if "\n" not in text else text.strip()
        seen.add(text.casefold())
        rows.append({"text": text, "lang": label, "source": "written", "shape": shape})
    packages = packages_of(args.locale_dir, {d for by in candidates.values() for d in by})
    for label in sorted(QUOTA):
        by_domain = {
            domain: [t for t in texts if len(labels[t.casefold()]) == 1]
            for domain, texts in candidates[label].items()
        }
        for domain, text in round_robin(rng, by_domain, QUOTA[label]):
            if text.casefold() in seen:
                continue
            seen.add(text.casefold())
            source = f"gettext:{packages[domain]}"
            rows.append({"text": text, "lang": label, "source": source, "shape": "ui"})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(args.out)
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row["lang"]] += 1
    print(f"{len(rows)} rows -> {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")
    print(", ".join(f"{label} {counts[label]}" for label in sorted(counts)))
    used = {row["source"].removeprefix("gettext:") for row in rows if row["source"] != "written"}
    print("packages: " + ", ".join(sorted(used)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
