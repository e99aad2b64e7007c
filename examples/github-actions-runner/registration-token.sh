#!/usr/bin/env bash
# registration-token.sh prints a fresh runner registration token (valid for
# one hour) on standard output, asked from the GitHub API with the
# long-lived credential in GITHUB_TOKEN_FILE. It runs on the host: the
# credential never enters a runner container.
#
#   GITHUB_TOKEN_FILE  file holding a fine-grained PAT or a GitHub App
#                      installation token (required; readable by root only)
#   RUNNER_SCOPE       repo (default) or org
#   REPO_URL           https://github.com/OWNER/REPO   (scope repo)
#   ORG_NAME           organisation                    (scope org)
#   GITHUB_API         API base URL (default https://api.github.com; GHES:
#                      https://HOST/api/v3)
#
# The token is printed and nothing else; errors go to standard error with a
# non-zero exit. The credential is sent in a header read from a file by
# curl, so it never appears on a command line (ps).
set -euo pipefail

die() { echo "registration-token: $*" >&2; exit 1; }

: "${GITHUB_TOKEN_FILE:?set GITHUB_TOKEN_FILE}"
[[ -r $GITHUB_TOKEN_FILE ]] || die "cannot read $GITHUB_TOKEN_FILE"
api=${GITHUB_API:-https://api.github.com}
case ${RUNNER_SCOPE:-repo} in
repo)
	[[ ${REPO_URL:-} =~ ^https://[^/]+/([^/]+)/([^/]+)/?$ ]] || die "REPO_URL must be https://HOST/OWNER/REPO, not '${REPO_URL:-}'"
	path="repos/${BASH_REMATCH[1]}/${BASH_REMATCH[2]%.git}"
	;;
org)
	[[ ${ORG_NAME:-} =~ ^[A-Za-z0-9][A-Za-z0-9-]*$ ]] || die "RUNNER_SCOPE=org needs ORG_NAME"
	path="orgs/$ORG_NAME"
	;;
*) die "RUNNER_SCOPE must be repo or org" ;;
esac

# The Authorization header, built in a private temporary file for curl -H @FILE.
hdr=$(mktemp)
trap 'rm -f "$hdr"' EXIT
chmod 600 "$hdr"
printf 'Authorization: Bearer %s\n' "$(tr -d '[:space:]' <"$GITHUB_TOKEN_FILE")" >"$hdr"

resp=$(curl -fsS --max-time 30 -X POST \
	-H @"$hdr" \
	-H "Accept: application/vnd.github+json" \
	-H "X-GitHub-Api-Version: 2022-11-28" \
	"$api/$path/actions/runners/registration-token") || die "the GitHub API refused (check the credential's permission for $path)"
token=$(sed -n 's/.*"token"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' <<<"$resp" | head -n 1)
[[ -n $token ]] || die "no token in the API's answer"
printf '%s\n' "$token"
