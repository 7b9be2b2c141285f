#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, if they are missing:
#   chromium   - renders the built book as a reader sees it (tests/test_book_html.py)
#   bubblewrap - the per-submission sandbox of bncourse-grade
# Without root (or apt-get) it says what is missing and carries on; the tests
# that need a missing program then fail with a message naming it.
set -u
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "warning: ${missing[*]} not installed; run as root: apt-get install ${missing[*]}" >&2
fi
exit 0
