# shellcheck shell=bash
# Shared by the benchmark scripts (sourced, from the repository's root): failing with the
# script's name, --help from the script's header comment, and a corpus for speed runs.

fail() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

# Prints the comment block between the shebang and `set -euo`.
print_help() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# write_corpus FILE: any text will do, as speed does not depend on the data; the repository's
# own is always here and tokenizes in seconds, which the multi-megabyte data/corpus does not.
write_corpus() { cat README.md docs/*.md include/minimoe/*.hpp include/minimoe/*/*.hpp >"$1"; }
