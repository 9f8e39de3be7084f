# shellcheck shell=bash
# garage.sh: one Garage node on loopback for the benchmarks (sourced): single-node layout,
# sqlite metadata, its own zstd off (objects come compressed, and the server shares the
# cores with what is measured), a bucket and a key, the AWS_* variables exported for the
# clients. Needs WORK (a scratch directory), GARAGE (the binary), PYTHON (for free
# ports), BUCKET and die; sets GARAGE_PID (the caller kills it) and ENDPOINT.

# free_ports N: N distinct loopback TCP ports nobody listens on right now, on one line.
# All N sockets stay bound until all are chosen: one call per port could get the same
# port twice, as the kernel may hand out a port again once its socket is closed.
free_ports() {
  "$PYTHON" -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
' "$1"
}

# g ARGS...: the garage CLI for our node.
g() {
  "$GARAGE" -c "$WORK/garage/garage.toml" "$@"
}

# wait_for WHAT SECONDS CMD...: retries CMD until it succeeds.
wait_for() {
  local what=$1 limit=$2 t0=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    kill -0 "$GARAGE_PID" 2>/dev/null || die "garage exited while waiting for $what" "$WORK/garage/garage.log"
    [ $((SECONDS - t0)) -lt "$limit" ] || die "no $what after $limit s" "$WORK/garage/garage.log"
    sleep 0.1
  done
}

healthy() {
  g health 2>/dev/null | grep -q 'Cluster health: *HEALTHY'
}

# listening PORT: something accepts connections on 127.0.0.1:PORT.
listening() {
  (: >"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_garage() {
  local dir=$WORK/garage rpc s3 admin secret token id keyinfo
  mkdir -p "$dir"
  read -r rpc s3 admin <<<"$(free_ports 3)"
  secret=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
  token=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
  cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
admin_token = "$token"
EOF
  (cd "$dir" && exec "$GARAGE" -c "$dir/garage.toml" server) >"$dir/garage.log" 2>&1 &
  GARAGE_PID=$!
  wait_for "answer to garage status" 60 g status
  id=$(g node id -q) || die "garage node id failed" "$dir/garage.log"
  g layout assign -z dc1 -c 1G "${id%%@*}" >/dev/null || die "garage layout assign failed"
  g layout apply --version 1 >/dev/null || die "garage layout apply failed"
  wait_for "healthy cluster" 60 healthy
  g bucket create "$BUCKET" >/dev/null || die "garage bucket create failed"
  keyinfo=$(g key create walpipe) || die "garage key create failed"
  g bucket allow --read --write --owner "$BUCKET" --key walpipe >/dev/null \
    || die "garage bucket allow failed"
  AWS_ACCESS_KEY_ID=$(awk '/^ *Key ID:/ { print $3 }' <<<"$keyinfo")
  AWS_SECRET_ACCESS_KEY=$(awk '/^ *Secret key:/ { print $3 }' <<<"$keyinfo")
  if [ -z "$AWS_ACCESS_KEY_ID" ] || [ -z "$AWS_SECRET_ACCESS_KEY" ]; then
    die "no key in the output of garage key create"
  fi
  ENDPOINT=http://127.0.0.1:$s3
  export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  export AWS_REGION=garage AWS_DEFAULT_REGION=garage AWS_ENDPOINT_URL=$ENDPOINT
  export AWS_CONFIG_FILE=$WORK/no-aws-config AWS_SHARED_CREDENTIALS_FILE=$WORK/no-aws-credentials
  export AWS_EC2_METADATA_DISABLED=true
  wait_for "the S3 API on port $s3" 60 listening "$s3"
}

