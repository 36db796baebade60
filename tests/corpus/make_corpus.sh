#!/bin/sh
# make_corpus.sh OUTDIR [--with-12mp] - see make_corpus.py for the file names.
exec /usr/bin/python3 "$(dirname "$0")/make_corpus.py" "$@"
