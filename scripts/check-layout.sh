#!/bin/sh
# Keeps the layout honest: MPI only in mpi/, SQLite only in jobs/, no exit() below cmd/.
set -u
fail=0
bad=$(grep -l -E '#include *[<"]mpi\.h' core/*.[ch] jobs/*.[ch] cmd/*.[ch] 2>/dev/null)
[ -n "$bad" ] && { echo "layout: only mpi/ may include mpi.h: $bad" >&2; fail=1; }
bad=$(grep -l -E '#include *[<"]sqlite3\.h' core/*.[ch] mpi/*.[ch] cmd/*.[ch] 2>/dev/null)
[ -n "$bad" ] && { echo "layout: only jobs/ may include sqlite3.h: $bad" >&2; fail=1; }
bad=$(grep -l -E '(^|[^_a-z])exit *\(' core/*.c jobs/*.c mpi/*.c 2>/dev/null)
[ -n "$bad" ] && { echo "layout: exit() is only allowed in cmd/: $bad" >&2; fail=1; }
exit $fail
