#!/usr/bin/env bash
# A real OpenSearch node with the k-NN plugin, for tests/servers/opensearch.py.
#
# Fetches from Maven Central (through mvn) the integ-test-zip distribution (a runnable node
# without a bundled JDK; 3.x carries the lang-painless and transport-grpc modules that k-NN
# extends) and the k-NN plugin of the same version, unpacks the node into the cache and
# installs the plugin. The Lucene engine of k-NN needs no native library. Idempotent: a node
# already unpacked here is left as it is. Prints nothing unless something fails.
set -euo pipefail

# 3.5.0: the newest version with both the distribution and the k-NN plugin on Central; 3.x
# needs Java 21+ and has the `_shard_doc` tiebreaker for point-in-time searches (3.3+).
OPENSEARCH_VERSION=3.5.0
KNN_VERSION="$OPENSEARCH_VERSION.0"
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.11.0
CACHE="${QMIGRATE_CI_CACHE:-$HOME/.cache/qmigrate-ci}"
NODE_HOME="$CACHE/opensearch-$OPENSEARCH_VERSION"
# The file the fixture reads: it names the JDK the node runs on.
MARKER="$NODE_HOME/.qmigrate-java-home"

[ -f "$MARKER" ] && exit 0

java_major() {
    "$1/bin/java" -XshowSettings:properties -version 2>&1 |
        sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p'
}

# A JDK 21+: $OPENSEARCH_JAVA_HOME if set, else the Temurin 25 JDK, else any other one.
java_home=""
for candidate in "${OPENSEARCH_JAVA_HOME:-}" /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/*; do
    if [ -n "$candidate" ] && [ -x "$candidate/bin/java" ] &&
        [ "$(java_major "$candidate")" -ge 21 ] 2>/dev/null; then
        java_home="$candidate"
        break
    fi
done
if [ -z "$java_home" ]; then
    echo "opensearch.sh: OpenSearch $OPENSEARCH_VERSION needs a JDK 21+; none under /usr/lib/jvm" >&2
    echo "  (set OPENSEARCH_JAVA_HOME to one)" >&2
    exit 1
fi
command -v unzip >/dev/null || { apt-get update -qq && apt-get install -y -qq unzip >/dev/null; }

mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/opensearch-partial.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Runs a step with its output in a log, shown only when the step fails.
quietly() {
    "$@" >"$work/step.log" 2>&1 || {
        cat "$work/step.log" >&2
        echo "opensearch.sh: failed: $*" >&2
        exit 1
    }
}
fetch() {
    quietly mvn --batch-mode --quiet -Dstyle.color=never "$DEPENDENCY_PLUGIN:copy" \
        -Dartifact="$1" -DoutputDirectory="$work/downloads"
}
fetch "org.opensearch.distribution.integ-test-zip:opensearch:$OPENSEARCH_VERSION:zip"
fetch "org.opensearch.plugin:opensearch-knn:$KNN_VERSION:zip"

unzip -q "$work/downloads/opensearch-$OPENSEARCH_VERSION.zip" -d "$work"
node="$work/opensearch-$OPENSEARCH_VERSION"
for module in lang-painless transport-grpc; do
    if [ ! -d "$node/modules/$module" ]; then
        echo "opensearch.sh: the $OPENSEARCH_VERSION distribution lacks the $module module" >&2
        exit 1
    fi
done
quietly env OPENSEARCH_JAVA_HOME="$java_home" "$node/bin/opensearch-plugin" install --batch \
    "file://$work/downloads/opensearch-knn-$KNN_VERSION.zip"
echo "$java_home" >"$node/.qmigrate-java-home"

rm -rf "$NODE_HOME"
mv "$node" "$NODE_HOME"
