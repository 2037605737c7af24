#!/usr/bin/env bash
# A runnable Elasticsearch node for tests/servers/elasticsearch.py: the integ-test-zip
# distribution from Maven Central (server, transport, x-pack core and security; no bundled
# JDK: the machine's Java 17 runs 8.19), unpacked under the CI cache. Idempotent and quiet.
set -euo pipefail
VERSION="${QMIGRATE_ES_VERSION:-8.19.21}"
CACHE="${HOME}/.cache/qmigrate-ci"
HOME_DIR="${CACHE}/elasticsearch-${VERSION}"
[ -x "${HOME_DIR}/bin/elasticsearch" ] && exit 0
ARTIFACT="org.elasticsearch.distribution.integ-test-zip:elasticsearch:${VERSION}:zip"
if ! log=$(mvn -q -B dependency:get -Dartifact="${ARTIFACT}" -Dtransitive=false 2>&1); then
    echo "${log}" >&2
    exit 1
fi
ZIP="${HOME}/.m2/repository/org/elasticsearch/distribution/integ-test-zip/elasticsearch/${VERSION}/elasticsearch-${VERSION}.zip"
mkdir -p "${CACHE}"
rm -rf "${HOME_DIR}.partial"
mkdir "${HOME_DIR}.partial"
unzip -q "${ZIP}" -d "${HOME_DIR}.partial"
# Elasticsearch refuses to run as root: the fixture runs it as `nobody`, who must read it.
chmod -R o+rX "${HOME_DIR}.partial"
chmod o+x "${HOME}" "${CACHE}" 2>/dev/null || true
mv "${HOME_DIR}.partial/elasticsearch-${VERSION}" "${HOME_DIR}"
rmdir "${HOME_DIR}.partial"
