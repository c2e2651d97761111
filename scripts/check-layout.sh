#!/bin/sh
# Keeps the layout honest (run by `make check`; exits non-zero on the first kind of problem it finds):
#   - every .c file under core/ cmd/ jobs/ mpi/ tests/ (tests/fuzz/ too) is one the Makefile builds (`make print-sources`),
#     and every core/ file sits in a subsystem folder core/NAME/ (those are the include path), so a
#     file placed where it would silently drop out of the build fails here instead;
#   - MPI (mpi.h, MPI_* identifiers) only in mpi/; SQLite (sqlite3.h, sqlite3_* identifiers) only in
#     jobs/ (tests may open a database directly to check it); comments do not count;
#   - no exit() below cmd/.
set -u
cd "${1:-$(dirname "$0")/..}"   # the tree to check (default: this repository)
fail=0
say() { echo "layout: $*" >&2; fail=1; }

# 1. files the build would not see
built=$(make -s --no-print-directory print-sources | sort -u)
for f in $(find core cmd jobs mpi tests -name '*.c' | sort); do
    echo "$built" | grep -qxF "$f" || say "$f is not built by the Makefile (core/ sources belong in core/NAME/*.c; tests are tests/test_*.c, fuzz harnesses tests/fuzz/fuzz_*.c)"
done
for f in $(find core -type f | sort); do
    case "$f" in
        core/*/*/*) say "$f is nested too deep: core/ holds one level of subsystem folders (core/NAME/file)" ;;
        core/*/*.c | core/*/*.h) ;;
        core/*/*) say "$f: only .c and .h files belong in core/" ;;
        *) say "$f is at the top of core/: put it in a subsystem folder (core/NAME/)" ;;
    esac
done

# source text without comments (so a comment may name MPI_Reduce or sqlite3_open), stripped once
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in $(find core cmd jobs mpi -name '*.[ch]'); do
    mkdir -p "$tmp/$(dirname "$f")"
    gcc -fpreprocessed -dD -E -P -x c "$f" >"$tmp/$f" 2>/dev/null || cp "$f" "$tmp/$f"
done
uses() { # uses REGEX DIR... -> the files under DIR that use REGEX in code
    re=$1; shift
    (cd "$tmp" && grep -rlE "$re" "$@" | sort)
}

# 2. MPI only in mpi/, SQLite only in jobs/ (and tests)
bad=$(uses '#include *[<"]mpi\.h|\bMPI_[A-Za-z_]+' core cmd jobs)
[ -n "$bad" ] && say "only mpi/ may use MPI:" $bad
bad=$(uses '#include *[<"]sqlite3\.h|\bsqlite3_[a-z_0-9]+|\bSQLITE_[A-Z_]+' core cmd mpi)
[ -n "$bad" ] && say "only jobs/ may use SQLite:" $bad

# 3. exit() only in cmd/
bad=$(uses '(^|[^_a-zA-Z0-9])exit *\(' core jobs mpi)
[ -n "$bad" ] && say "exit() is only allowed in cmd/:" $bad
exit $fail
