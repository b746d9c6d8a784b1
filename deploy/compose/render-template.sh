#!/bin/sh
# render-template.sh TEMPLATE OUTPUT NAME=VALUE...
# Substitutes the ${NAME} placeholders of a shipped ops/ template (the same
# files `npm run cluster` renders) and nothing else. A value starting with @
# is read from that file (a compose secret), so no password is on a command
# line. Values must not contain "|" (make-secrets.sh writes hex).
set -eu
template="$1" output="$2"
shift 2
cp "$template" "$output.partial"
for pair in "$@"; do
  name="${pair%%=*}"
  value="${pair#*=}"
  case "$value" in @*) value="$(cat "${value#@}")" ;; esac
  sed -i "s|\${$name}|$value|g" "$output.partial"
done
if grep -nE '\$\{LLMCHAT_[A-Z0-9_]+\}' "$output.partial"; then
  echo "render-template.sh: placeholders left in $template" >&2
  exit 1
fi
mv "$output.partial" "$output"
