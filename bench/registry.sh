# Shared by build.sh demo and the benchmarks (source it): start Debian's
# docker-registry on a free 127.0.0.1 port and push blobs/manifests with curl.
# Sets WORK, PORT, REG (pid) and R (the repository API base for $REPO).
# With ACCESS_LOG=1 the registry logs every request to $WORK/access.log.

start_registry() { # repo
    WORK=$(mktemp -d /var/tmp/minipull-reg.XXXXXX)
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat > "$WORK/config.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: $([ "${ACCESS_LOG:-}" = 1 ] && echo false || echo true)}}
storage: {filesystem: {rootdirectory: $WORK/data}}
http: {addr: 127.0.0.1:$PORT}
YAML
    docker-registry serve "$WORK/config.yml" >"$WORK/access.log" 2>/dev/null &
    REG=$!
    trap 'kill $REG 2>/dev/null || true; rm -rf "$WORK"' EXIT
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/v2/" && break; sleep 0.1; done
    R="http://127.0.0.1:$PORT/v2/$1"
}

push_blob() { # file -> prints its digest (streams the file; no size limit)
    local d="sha256:$(sha256sum "$1" | cut -d' ' -f1)" loc
    loc=$(curl -s -D - -o /dev/null -X POST "$R/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
    case "$loc" in http*) ;; *) loc="http://127.0.0.1:$PORT$loc";; esac
    case "$loc" in *\?*) loc="$loc&digest=$d";; *) loc="$loc?digest=$d";; esac
    curl -s -f -X PUT -H 'Content-Type: application/octet-stream' -T "$1" "$loc" >/dev/null
    echo "$d"
}

push_image() { # tag config-file layer-file layer-media-type
    local cd ld
    cd=$(push_blob "$2"); ld=$(push_blob "$3")
    cat > "$WORK/manifest" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$cd","size":$(stat -c %s "$2")},"layers":[{"mediaType":"$4","digest":"$ld","size":$(stat -c %s "$3")}]}
JSON
    curl -s -f -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$WORK/manifest" "$R/manifests/$1" >/dev/null
    LAYER_DIGEST=$ld
}
