#!/usr/bin/env bash
# Build (and optionally push) the project's container images, tagged from the package version.
#
#   images/build.sh [--push] [--dry-run] [--platform PLATFORM]
#
# Image names and tags come from components/images.py (ALL_IMAGES), the same module the pipeline
# uses when it compiles, so the YAML always names images this script builds. Override at build time
# and at compile time alike with MONGARS_IMAGE_REGISTRY and MONGARS_IMAGE_TAG.
#
# Environment: PYTHON (default .venv/bin/python, else python3), DOCKER (default docker).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

push=0
dry_run=0
platform="linux/amd64"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --push) push=1 ;;
        --dry-run) dry_run=1 ;;
        --platform)
            [[ $# -ge 2 ]] || { echo "error: --platform needs a value, e.g. linux/amd64" >&2; exit 2; }
            platform="$2"
            shift
            ;;
        -h | --help)
            sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) echo "error: unknown argument $1; use --push, --dry-run or --platform" >&2; exit 2 ;;
    esac
    shift
done

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
docker_cmd="${DOCKER:-docker}"

# One "name<TAB>reference" line per image, plus the package version, from components/images.py.
image_lines="$(PYTHONPATH="$repo_root${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c '
from components.images import ALL_IMAGES, package_version
print("version\t" + package_version())
for name, ref in sorted(ALL_IMAGES.items()):
    print(name + "\t" + ref)
')"

version="$(printf '%s\n' "$image_lines" | awk -F'\t' '$1 == "version" {print $2}')"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

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

while IFS=$'\t' read -r name ref; do
    [[ "$name" == "version" ]] && continue
    if ! dockerfile="$(dockerfile_for "$name")"; then
        echo "error: components/images.py names image $name but images/build.sh has no Dockerfile for it; add one to dockerfile_for" >&2
        exit 1
    fi
    run "$docker_cmd" build \
        --platform "$platform" \
        --file "$dockerfile" \
        --build-arg "VERSION=$version" \
        --build-arg "REVISION=$revision" \
        --build-arg "CREATED=$created" \
        --tag "$ref" \
        .
    if [[ $push -eq 1 ]]; then
        run "$docker_cmd" push "$ref"
    fi
done <<<"$image_lines"
