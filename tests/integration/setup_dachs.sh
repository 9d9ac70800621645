#!/usr/bin/env bash
# Take a Debian (bookworm) machine to a running GAVO DaCHS on 127.0.0.1:8080
# that serves what the voharvest integration tests need:
#
#   - TAP at /tap, with the RegTAP tables (schema rr) of tests/integration/dachs/rr
#   - SIA v1 at /voharvest/sdss/q/i/siap.xml and /voharvest/uvot/q/i/siap.xml
#     over synthetic FITS images (and their JPEG renderings)
#   - the site-wide SIA v2 service at /__system__/siap2/sitewide/siap2.xml,
#     over ivoa.obscore: the sdss, uvot and dlimg collections
#   - an infrared collection served through DataLink and SODA, voharvest/dlimg
#     (in ivoa.obscore with the DataLink documents as access_url; not in the
#     registry): DataLink documents at
#     /voharvest/dlimg/q/dl/dlmeta?ID=<pubDID>, SODA cutouts at
#     /voharvest/dlimg/q/dl/dlget, SIA v2 over it alone (access_url: the
#     DataLink document) at /voharvest/dlimg/q/sia2/siap2.xml, SIA v1 at
#     /voharvest/dlimg/q/i/siap.xml
#   - a protected SIA v1 service over the sdss images,
#     /voharvest/secure/svc/i/siap.xml (limitTo: HTTP basic auth for the
#     DaCHS user "voharvest"); it has no table, so it is never imported
#
# Idempotent: run it again at any time. It installs only what is missing,
# starts PostgreSQL and DaCHS if they are down, rewrites the inputs only where
# they changed, imports the resources again only when their inputs changed
# (or the services don't answer as they should), and waits until every
# service the tests use answers.
#
# Needs root (or sudo) and the Debian package archive. Usage:
#
#   bash tests/integration/setup_dachs.sh
#
# Stop it with tests/integration/stop_dachs.sh.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
source_dir="$here/dachs"
started=$(date +%s)

say() { printf '[setup_dachs %3ss] %s\n' "$(($(date +%s) - started))" "$*"; }
fail() { say "FAILED: $*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
    as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
    as_root() { sudo -n "$@"; }
else
    fail "run as root (or with password-less sudo): DaCHS is a system service"
fi

export DEBIAN_FRONTEND=noninteractive

package_state() {
    dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || true
}

start_postgres() {
    # In a container there is no init system: start the cluster by hand.
    if ! pg_lsclusters --no-header 2>/dev/null | grep -q ' online'; then
        say "starting PostgreSQL"
        as_root service postgresql start >/dev/null
    fi
    local tries=0
    until pg_lsclusters --no-header 2>/dev/null | grep -q ' online'; do
        tries=$((tries + 1))
        [ "$tries" -le 30 ] || fail "PostgreSQL did not come up: $(pg_lsclusters 2>&1)"
        sleep 1
    done
}

# --- 1. the package -----------------------------------------------------------
state="$(package_state gavodachs2-server)"
if [ "$state" != "ii " ]; then
    if [ -z "$state" ] || [ "${state:0:2}" = "un" ]; then
        say "installing gavodachs2-server (apt-get update, install)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        # The post-install script runs 'dachs init', which needs a running
        # PostgreSQL; in a container nothing starts it, so the install ends in
        # an error here and is completed below, once PostgreSQL runs.
        if ! as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq gavodachs2-server >/tmp/voharvest-dachs-apt.log 2>&1; then
            say "apt-get install stopped at the configuration step (expected without a running PostgreSQL)"
        fi
        [ -x /usr/bin/dachs ] || fail "gavodachs2-server did not install; see /tmp/voharvest-dachs-apt.log"
    fi
    start_postgres
    say "configuring the DaCHS packages (dpkg --configure -a)"
    as_root env DEBIAN_FRONTEND=noninteractive dpkg --configure -a >/tmp/voharvest-dachs-dpkg.log 2>&1 \
        || fail "dpkg --configure -a failed; see /tmp/voharvest-dachs-dpkg.log"
    [ "$(package_state gavodachs2-server)" = "ii " ] || fail "gavodachs2-server is not configured"
else
    say "gavodachs2-server is installed"
fi
start_postgres

# --- 2. the inputs: RDs, images, registry records ------------------------------
# DaCHS's own python3 has astropy, numpy, Pillow and healpy (its dependencies);
# it is used here so that nothing depends on the project's environment.
py=/usr/bin/python3
read -r inputs server_url bind port authority < <("$py" -c '
from gavo import base
print(base.getConfig("inputsDir"), base.getConfig("web", "serverURL"),
      base.getConfig("web", "bindAddress") or "127.0.0.1", base.getConfig("web", "serverPort"),
      base.getConfig("ivoa", "authority"))')
target="$inputs/voharvest"
base="http://$bind:$port"
say "inputs in $target; server URL $server_url; listening on $base"

changed=0
install_file() {  # install_file SOURCE DEST: copy only if different
    if ! cmp -s "$1" "$2"; then
        as_root install -D -m 0644 "$1" "$2"
        changed=1
    fi
}
for rd in sdss uvot dlimg rr; do
    install_file "$source_dir/$rd/q.rd" "$target/$rd/q.rd"
done
as_root "$py" "$source_dir/make_fits.py" "$target" >/dev/null \
    || fail "could not write the images"
records="$(mktemp)"
"$py" "$source_dir/regtap_records.py" "$records" "$server_url" >/dev/null \
    || fail "could not write the registry records"
install_file "$records" "$target/rr/records.json"
rm -f "$records"

# The protected service: an RD without tables (no import, so it is kept out of
# 'changed' and of the import digest below, whose glob takes */q.rd only; DaCHS
# reads a new or changed RD on the next request) and its DaCHS user.
secure_user=voharvest
secure_password=voharvest-dachs-pw
if ! cmp -s "$source_dir/secure/svc.rd" "$target/secure/svc.rd"; then
    as_root install -D -m 0644 "$source_dir/secure/svc.rd" "$target/secure/svc.rd"
fi
if as_root dachs adm listusers 2>/dev/null | grep -q "^$secure_user "; then
    secure_account=changeuser
else
    secure_account=adduser
fi
as_root dachs adm "$secure_account" "$secure_user" "$secure_password" \
    "voharvest integration tests (limitTo)" >/dev/null 2>&1 \
    || fail "dachs adm $secure_account $secure_user failed"

# What the imports were made from: RDs (the glob takes every collection's,
# dlimg's too), records, the image generator (it writes the same bytes every
# time), DaCHS's ObsCore.
digest="$(cat "$target"/*/q.rd "$target/rr/records.json" "$source_dir/make_fits.py" \
    /usr/lib/python3/dist-packages/gavo/resources/inputs/__system__/obscore.rd \
    | sha256sum | cut -d' ' -f1)"
stamp="$target/.imported"

check() {  # check URL TEXT...: the answer contains every TEXT
    local body text
    body="$(curl -fsS --max-time 10 "$1" 2>/dev/null)" || return 1
    shift
    for text in "$@"; do
        grep -qF "$text" <<<"$body" || return 1
    done
}
check_cutout() {  # check_cutout URL: a FITS image smaller than 1 MB (a cutout)
    local file type ok=1
    file="$(mktemp)"
    if type="$(curl -fsS --max-time 10 -o "$file" -w '%{content_type}' "$1" 2>/dev/null)" \
        && [ "$type" = "image/fits" ] \
        && [ "$(head -c 30 "$file")" = "SIMPLE  =                    T" ] \
        && [ "$(stat -c %s "$file")" -lt 1000000 ]; then
        ok=0
    fi
    rm -f "$file"
    return "$ok"
}
# The DataLink collection's M51 J image: its ID, and a 3' circle around M51.
dl_id="ivo%3A//$authority/~%3Fvoharvest/dlimg/data/dlimg_m51_J.fits"
dl_circle="CIRCLE=202.4696%2047.1952%200.05"
# Its DataLink document as DaCHS writes it in access_url (ObsCore, SIA v2).
dl_links="$server_url/voharvest/dlimg/q/dl/dlmeta?ID=$dl_id"
all_answer() {
    check "$base/tap/availability" "available>true" \
    && check "$base/tap/sync?REQUEST=doQuery&LANG=ADQL&QUERY=SELECT%20COUNT(*)%20AS%20n%20FROM%20rr.resource%20NATURAL%20JOIN%20rr.capability" '"QUERY_STATUS" value="OK"' \
    && check "$base/voharvest/sdss/q/i/siap.xml?POS=202.47,47.2&SIZE=0.2&RESPONSEFORMAT=votabletd" "sdss_m51_g.fits" \
    && check "$base/voharvest/uvot/q/i/siap.xml?POS=202.47,47.2&SIZE=0.2&RESPONSEFORMAT=votabletd" "uvot_m51_uvw1.fits" \
    && check "$base/__system__/siap2/sitewide/siap2.xml?POS=CIRCLE%20202.47%2047.2%200.1&RESPONSEFORMAT=votabletd" \
        "sdss_m51_r.fits" "uvot_m51_uvw1.fits" "<TD>$dl_links</TD>" \
        "<TD>application/x-votable+xml;content=datalink</TD>" \
    && check "$base/voharvest/dlimg/q/i/siap.xml?POS=202.47,47.2&SIZE=0.2&RESPONSEFORMAT=votabletd" "dlimg_m51_J.fits" \
    && check "$base/voharvest/dlimg/q/sia2/siap2.xml?POS=CIRCLE%20202.47%2047.2%200.05&RESPONSEFORMAT=votabletd" \
        "<TD>$dl_links</TD>" "<TD>application/x-votable+xml;content=datalink</TD>" \
    && check "$base/voharvest/dlimg/q/dl/dlmeta?ID=$dl_id" "ivo://ivoa.net/std/SODA#sync-1.0" \
    && check_cutout "$base/voharvest/dlimg/q/dl/dlget?ID=$dl_id&$dl_circle"
}

secure_answers() {  # refused without the password, served with it
    local url="$base/voharvest/secure/svc/i/siap.xml?POS=202.47,47.2&SIZE=0.2&RESPONSEFORMAT=votabletd"
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$url")" = 401 ] || return 1
    curl -fsS --max-time 10 -u "$secure_user:$secure_password" "$url" 2>/dev/null \
        | grep -qF "sdss_m51_g.fits"
}
wait_for_secure() {  # wait_for_secure SECONDS
    local tries=0
    until secure_answers; do
        tries=$((tries + 1))
        [ "$tries" -le "$1" ] || fail "the protected service voharvest/secure/svc does not answer as expected"
        sleep 1
    done
}

server_up() { curl -fsS -o /dev/null --max-time 5 "$base/tap/availability" 2>/dev/null; }
wait_for_services() {  # wait_for_services SECONDS: until every service answers
    local tries=0
    until all_answer; do
        tries=$((tries + 1))
        [ "$tries" -le "$1" ] || return 1
        sleep 1
    done
}

if [ "$changed" = 0 ] && [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ]; then
    # Imported before from these very inputs: at most the server needs starting
    # (after a reboot, say).
    if ! all_answer && ! server_up; then
        say "starting the DaCHS server"
        as_root dachs serve start >/dev/null 2>&1 || fail "dachs serve start failed"
    fi
    if wait_for_services 30; then
        wait_for_secure 30
        say "DaCHS already serves these inputs at $base"
        exit 0
    fi
    say "DaCHS does not answer as expected: importing again"
fi

# --- 3. imports (each drops and re-creates its tables: idempotent) -----------
import_rd() {
    local log
    log="$(mktemp)"
    if ! (cd "$inputs" && as_root dachs imp "$@") >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        fail "dachs imp $* failed"
    fi
    say "imported $* ($(grep -Eo 'Rows affected: [0-9]+' "$log" | tail -n 1 || echo 'no rows'))"
    rm -f "$log"
}
as_root rm -f "$stamp"
# ObsCore first: each image collection then adds its part to ivoa.obscore
# (a row of ivoa._obscoresources, which importing //obscore keeps) and has
# the view rebuilt, so the ObsCore tables must exist before them. Importing a
# collection again drops its part (rebuilding ivoa.obscore without it) and
# adds it back, leaving the others' alone: after the imports, ivoa.obscore
# holds sdss, uvot and dlimg (dlimg through its ObsCore-shaped view and
# //obscore#publishObscoreLike). Then the site-wide SIA v2 service over it
# and the registry.
import_rd //obscore
import_rd voharvest/sdss/q
import_rd voharvest/uvot/q
import_rd voharvest/dlimg/q
import_rd //siap2
import_rd voharvest/rr/q

# --- 4. the server -----------------------------------------------------------
if server_up; then
    say "restarting the DaCHS server (fresh caches after the imports)"
    as_root dachs serve restart >/dev/null 2>&1 || fail "dachs serve restart failed"
else
    say "starting the DaCHS server"
    as_root dachs serve start >/dev/null 2>&1 || fail "dachs serve start failed"
fi

# --- 5. wait until every service the tests use answers ------------------------
if ! wait_for_services 60; then
    tail -n 30 /var/gavo/logs/dcErrors 2>/dev/null >&2 || true
    fail "DaCHS at $base does not answer as expected after 60 s"
fi
echo "$digest" | as_root tee "$stamp" >/dev/null
wait_for_secure 30
say "DaCHS is up at $base (TAP with rr, SIA v1 sdss and uvot, SIA v2 site-wide with sdss, uvot and dlimg, DataLink/SODA dlimg, protected SIA v1 secure)"
