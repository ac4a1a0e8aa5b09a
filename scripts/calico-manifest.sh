# Sourced by try-lab.sh (and its test): where the lab's Calico manifest comes from. The
# lab's nodes have no internet, so kubeha applies a manifest from this machine.
#
# calico_manifest [PATH] prints the manifest's path, looking at, in order: PATH, then
# $KUBEHA_CALICO_MANIFEST, then ../shared/fixtures/calico-<version>.yaml beside the
# repository; with KUBEHA_CALICO_DOWNLOAD=1 it then downloads the release manifest into
# .lab/ (optional, and not exercised by the tests: they have no internet). Otherwise it
# says in one line where to put the file and returns 1.

# The version kubeha defaults to (`kubeha version`); a test keeps the two equal.
CALICO_VERSION=v3.28.1

# Resolved when sourced: the function may run from any folder.
KUBEHA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

calico_manifest() {
    local name="calico-$CALICO_VERSION.yaml"
    local given="${1:-${KUBEHA_CALICO_MANIFEST:-}}"
    local shared
    shared="$(dirname "$KUBEHA_ROOT")/shared/fixtures/$name"
    if [[ -n "$given" ]]; then
        # A file the user named must exist: falling back silently would hide a typo.
        [[ -f "$given" ]] && echo "$given" && return 0
        echo "error: the Calico manifest $given does not exist" >&2
        return 1
    fi
    if [[ -f "$shared" ]]; then
        echo "$shared"
        return 0
    fi
    if [[ "${KUBEHA_CALICO_DOWNLOAD:-}" == 1 ]]; then
        local into="$KUBEHA_ROOT/.lab/$name"
        mkdir -p "$KUBEHA_ROOT/.lab"
        if curl -fsSL --retry 3 -o "$into.part" \
            "https://raw.githubusercontent.com/projectcalico/calico/$CALICO_VERSION/manifests/calico.yaml"; then
            mv "$into.part" "$into"
            echo "$into"
            return 0
        fi
        echo "error: downloading the Calico $CALICO_VERSION manifest failed" >&2
        return 1
    fi
    echo "error: no Calico manifest: pass its path (./try-lab.sh calico.yaml), set KUBEHA_CALICO_MANIFEST, put it at $shared, or set KUBEHA_CALICO_DOWNLOAD=1 to fetch it from github.com" >&2
    return 1
}
