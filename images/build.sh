#!/usr/bin/env bash
# Build (and optionally push) the project's container images, tagged exactly as the compiled
# pipeline names them.
#
#   images/build.sh [--image NAME]... [--push] [--dry-run] [--platform PLATFORM]
#                   [--base-image REF] [--ca-bundle FILE]... [--torch-wheel FILE] [--torch-index URL]
#
# Image names and tags come from components/images.py (ALL_IMAGES), the module the pipeline uses
# when it compiles, so the YAML always names images this script builds (MONGARS_IMAGE_REGISTRY and
# MONGARS_IMAGE_TAG override both alike). --image NAME builds only that image (repeatable).
#
# Base image: --base-image or MONGARS_BASE_IMAGE (default python:3.11-slim-bookworm). When it is
# neither present locally nor pullable (no registry reachable), images/base.sh makes an equivalent
# from Debian's packages (debootstrap, needs root) as MONGARS_FALLBACK_BASE_IMAGE (default
# mongars-base:bookworm-py311), reused on later builds.
# CPU torch for mongars-runtime: from --torch-index / MONGARS_TORCH_INDEX_URL (default the PyTorch
# CPU index); when that index is unreachable, the host's pip downloads torch==X+cpu (whatever index
# or mirror it is configured with) into images/build-extra/wheels/; or give --torch-wheel FILE.
# Behind a TLS-intercepting proxy: --ca-bundle FILE (repeatable) or MONGARS_BUILD_CA_BUNDLE
# ("FILE FILE"), trusted by pip in the build stages only (images/build-extra/README.md).
# Builder: the legacy builder and BuildKit both work (DOCKER_BUILDKIT=1 needs a client with
# BuildKit: buildx, or Docker 20.10's built-in one).
#
# Environment: PYTHON (default .venv/bin/python, else python3), DOCKER (default docker).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

push=0
dry_run=0
platform="linux/amd64"
only=()
base_image="${MONGARS_BASE_IMAGE:-python:3.11-slim-bookworm}"
fallback_base="${MONGARS_FALLBACK_BASE_IMAGE:-mongars-base:bookworm-py311}"
torch_index="${MONGARS_TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"
torch_wheel="${MONGARS_TORCH_CPU_WHEEL:-}"
read -r -a ca_bundles <<<"${MONGARS_BUILD_CA_BUNDLE:-}"

need_value() {
    [[ $2 -ge 2 ]] || { echo "error: $1 needs a value" >&2; exit 2; }
}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --push) push=1 ;;
        --dry-run) dry_run=1 ;;
        --platform) need_value "$1 (e.g. linux/amd64)" $#; platform="$2"; shift ;;
        --image) need_value "$1 (mongars-runtime or mongars-train-cuda)" $#; only+=("$2"); shift ;;
        --base-image) need_value "$1 (an image reference)" $#; base_image="$2"; shift ;;
        --ca-bundle) need_value "$1 (a PEM file)" $#; ca_bundles+=("$2"); shift ;;
        --torch-wheel) need_value "$1 (a torch-X+cpu wheel file)" $#; torch_wheel="$2"; shift ;;
        --torch-index) need_value "$1 (a pip index URL)" $#; torch_index="$2"; shift ;;
        -h | --help)
            sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "error: unknown argument $1; see images/build.sh --help" >&2
            exit 2
            ;;
    esac
    shift
done

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
docker_cmd="${DOCKER:-docker}"

# One "name<TAB>reference" line per image, plus the package version, from components/images.py.
image_lines="$(PYTHONPATH="$repo_root${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c '
from monGARS.components import images
version = images.package_version() if hasattr(images, "package_version") else "0.0.0"
print("version\t" + version)
for name, ref in sorted(images.ALL_IMAGES.items()):
    print(name + "\t" + ref)
')"

version="$(printf '%s\n' "$image_lines" | awk -F'\t' '$1 == "version" {print $2}')"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

for name in "${only[@]}"; do
    if ! printf '%s\n' "$image_lines" | awk -F'\t' -v n="$name" '$1 == n {found = 1} END {exit !found}'; then
        echo "error: --image $name: components/images.py names no such image; use one of: $(printf '%s\n' "$image_lines" | awk -F'\t' '$1 != "version" {printf "%s ", $1}')" >&2
        exit 2
    fi
done
selected() {
    [[ ${#only[@]} -eq 0 ]] && return 0
    local name
    for name in "${only[@]}"; do [[ "$name" == "$1" ]] && return 0; done
    return 1
}

dockerfile_for() {
    case "$1" in
        mongars-runtime) echo images/Dockerfile.runtime ;;
        mongars-train-cuda) echo images/Dockerfile.train-cuda ;;
        *) return 1 ;;
    esac
}

run() {
    if [[ $dry_run -eq 1 ]]; then
        printf '%q ' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# --- the base image ---------------------------------------------------------------------------
resolve_base() {
    if "$docker_cmd" image inspect "$base_image" >/dev/null 2>&1; then
        return 0
    fi
    echo "build.sh: pulling base image $base_image"
    if "$docker_cmd" pull "$base_image" >/dev/null 2>&1; then
        return 0
    fi
    echo "build.sh: cannot pull $base_image; using $fallback_base built from Debian's packages"
    if ! "$docker_cmd" image inspect "$fallback_base" >/dev/null 2>&1; then
        DOCKER="$docker_cmd" bash images/base.sh "$fallback_base"
    fi
    base_image="$fallback_base"
}

# --- build-only inputs (images/build-extra/) --------------------------------------------------
extra="images/build-extra"
prepare_ca() {
    rm -f "$extra/ca-bundle.crt"
    [[ ${#ca_bundles[@]} -eq 0 ]] && return 0
    local file
    for file in "${ca_bundles[@]}"; do
        [[ -s "$file" ]] || { echo "error: --ca-bundle $file: no such file (or empty)" >&2; exit 2; }
    done
    cat "${ca_bundles[@]}" >"$extra/ca-bundle.crt"
    echo "build.sh: build stages trust ${ca_bundles[*]} (not copied into the images)"
}

torch_cpu_pin() {
    # The CPU torch the runtime image installs: pyproject's torch pin with +cpu.
    "$PYTHON" images/pyproject_deps.py pyproject.toml --cpu-torch | awk '/^torch==/ {sub("torch==", ""); print}'
}

prepare_torch() {
    rm -rf "$extra/wheels"
    mkdir -p "$extra/wheels"
    local pin
    pin="$(torch_cpu_pin)"
    if [[ -n "$torch_wheel" ]]; then
        [[ -f "$torch_wheel" ]] || { echo "error: --torch-wheel $torch_wheel: no such file" >&2; exit 2; }
        case "$(basename "$torch_wheel")" in
            "torch-$pin-"*.whl) ;;
            *) echo "error: --torch-wheel $torch_wheel is not torch $pin (pyproject.toml pins it); give a torch-$pin-*.whl" >&2; exit 2 ;;
        esac
        cp "$torch_wheel" "$extra/wheels/"
        torch_index=""
        return 0
    fi
    if [[ -n "$torch_index" ]] && curl -fsS -o /dev/null --max-time 15 "${torch_index%/}/torch/" 2>/dev/null; then
        echo "build.sh: CPU torch $pin from $torch_index"
        return 0
    fi
    local arch
    case "$platform" in
        linux/amd64) arch=x86_64 ;;
        linux/arm64) arch=aarch64 ;;
        *) echo "error: no CPU torch wheel for platform $platform; pass --torch-wheel FILE" >&2; exit 2 ;;
    esac
    echo "build.sh: ${torch_index:-the torch index} is unreachable; asking this machine's pip for torch==$pin"
    if ! "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
        --platform "manylinux_2_28_$arch" --dest "$extra/wheels" "torch==$pin" >/dev/null; then
        echo "error: cannot get torch==$pin: the CPU index is unreachable and this machine's pip has no such wheel; pass --torch-wheel FILE or --torch-index URL" >&2
        exit 1
    fi
    torch_index=""
}

if [[ $dry_run -eq 0 ]]; then
    resolve_base
    prepare_ca
    if selected mongars-runtime; then prepare_torch; fi
fi

summary=()
while IFS=$'\t' read -r name ref; do
    [[ "$name" == "version" ]] && continue
    selected "$name" || continue
    if ! dockerfile="$(dockerfile_for "$name")"; then
        echo "error: components/images.py names image $name but images/build.sh has no Dockerfile for it; add one to dockerfile_for" >&2
        exit 1
    fi
    extra_args=()
    if [[ "$name" == "mongars-runtime" ]]; then extra_args=(--build-arg "TORCH_INDEX_URL=$torch_index"); fi
    started=$SECONDS
    run "$docker_cmd" build \
        --platform "$platform" \
        --file "$dockerfile" \
        --build-arg "BASE_IMAGE=$base_image" \
        "${extra_args[@]}" \
        --build-arg "VERSION=$version" \
        --build-arg "REVISION=$revision" \
        --build-arg "CREATED=$created" \
        --tag "$ref" \
        .
    if [[ $dry_run -eq 0 ]]; then
        size="$("$docker_cmd" image inspect --format '{{.Size}}' "$ref")"
        summary+=("$(printf '%s\t%ss\t%s MB' "$ref" "$((SECONDS - started))" "$((size / 1000000))")")
    fi
    if [[ $push -eq 1 ]]; then
        run "$docker_cmd" push "$ref"
    fi
done <<<"$image_lines"

if [[ ${#summary[@]} -gt 0 ]]; then
    echo "build.sh: built (image, build time, size):"
    printf '  %s\n' "${summary[@]}"
fi
