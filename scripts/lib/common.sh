# shellcheck shell=bash
# Shared by walpipe's wrappers: finding the binaries, reading the configuration, failing
# with one clear line. Sourced, never run.

# find_bin_dir: sets BIN to the directory holding wal-scan, wal-compress and wal-store:
# $WALPIPE_BIN_DIR, else the installed layout (this file is PREFIX/lib/walpipe/common.sh,
# the binaries are in PREFIX/bin), else the build next to these scripts (release, then
# debug), else $PATH. No subshell: archive_command runs once per WAL and every fork shows.
find_bin_dir() {
  local repo
  case ${BASH_SOURCE[0]} in
    */*) repo=${BASH_SOURCE[0]%/*}/../.. ;;
    *) repo=../.. ;;
  esac
  if [ -n "${WALPIPE_BIN_DIR:-}" ]; then
    BIN=$WALPIPE_BIN_DIR
    [ -x "$BIN/wal-store" ] || die 70 "WALPIPE_BIN_DIR=$BIN holds no wal-store"
  elif [[ ${BASH_SOURCE[0]} == */lib/walpipe/common.sh ]]; then
    # Installed: its own binaries or none, never another copy found on PATH.
    BIN=$repo/bin
    [ -x "$BIN/wal-store" ] || die 70 "$BIN/wal-store: not there (walpipe installed incompletely; install it again)"
  elif [ -x "$repo/target/release/wal-store" ]; then
    BIN=$repo/target/release
  elif [ -x "$repo/target/debug/wal-store" ]; then
    BIN=$repo/target/debug
  else
    BIN=$(command -v wal-store) || die 70 "cannot find wal-store: set WALPIPE_BIN_DIR or put walpipe's binaries on PATH"
    BIN=${BIN%/*}
  fi
}

# die CODE MESSAGE: one line on stderr, prefixed with the wrapper's name.
die() {
  local code=$1
  shift
  printf '%s: %s\n' "${0##*/}" "$*" >&2
  exit "$code"
}

# load_config FILE: exports the settings of FILE. Values already in the environment win
# (flags > environment > file). The file is parsed, never executed. The same file is the
# EnvironmentFile of the systemd units, so what both parsers read alike is all that is
# taken: NAME=value lines (blanks around the name and the value dropped, a value wholly
# in matching quotes unquoted), # comments; WALPIPE_ settings and the variables of the
# clients walpipe runs (libpq's PG*, AWS_*, AZURE_*, GOOGLE_*). A stray quote, another
# name, or WALPIPE_BIN_DIR (which binaries run is the environment's to say, not a
# settings file's) ends the wrapper with 78, naming the line by its number and name,
# never its value (a secret's line would otherwise end up in PostgreSQL's log).
load_config() {
  local file=$1 line key value number=0
  local -A seen=()
  # A fifo would hang the wrapper (PostgreSQL's archiver with it), a directory reads as
  # garbage: a settings file is a regular file.
  [ -f "$file" ] || die 78 "config file $file: not a regular file"
  [ -r "$file" ] || die 78 "cannot read config file $file (as user $(id -un))"
  while IFS= read -r line || [ -n "$line" ]; do
    number=$((number + 1))
    line=${line#"${line%%[![:space:]]*}"}
    case $line in '' | '#'* | ';'*) continue ;; esac
    [[ $line == *=* ]] || die 78 "$file line $number: not a NAME=value line"
    key=${line%%=*}
    key=${key%"${key##*[![:space:]]}"}
    value=${line#*=}
    value=${value#"${value%%[![:space:]]*}"}
    value=${value%"${value##*[![:space:]]}"}
    if ! [[ $key =~ ^(WALPIPE_[A-Z0-9_]+|PG[A-Z]+|AWS_[A-Z0-9_]+|AZURE_[A-Z0-9_]+|GOOGLE_[A-Z0-9_]+)$ ]]; then
      # A name is shown only when it is one (not a value typed before a stray '=').
      [[ $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || key="the name"
      die 78 "$file line $number: $key is not a walpipe setting nor a client's variable"
    fi
    # systemd takes a name's last line, the wrappers would take its first: refused.
    [ -z "${seen[$key]:-}" ] || die 78 "$file line $number: $key is set twice"
    seen[$key]=1
    [ "$key" != WALPIPE_BIN_DIR ] || die 78 "$file line $number: WALPIPE_BIN_DIR is not a setting (set it in the environment)"
    # The wrappers' own -v/-q, handed to the stages: WALPIPE_LOG is the setting.
    [ "$key" != WALPIPE_LOG_FLAGS ] || die 78 "$file line $number: WALPIPE_LOG_FLAGS is not a setting (use WALPIPE_LOG)"
    if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then
      value=${BASH_REMATCH[1]}
    fi
    case $value in *\"* | *\'* | *\\*) die 78 "$file line $number: $key: quotes or a backslash inside the value" ;; esac
    if [ -z "${!key+set}" ]; then
      export "$key=$value"
    fi
  done <"$file"
}

# The config file, if any, is read before flags are parsed, so flags override it.
# Scans "$@" for --config FILE / --config=FILE. Sets CONFIG_FILE to the file named (the
# last --config, else $WALPIPE_CONFIG): hook scripts see it as BARMAN_CONFIGURATION.
# shellcheck disable=SC2034 # CONFIG_FILE is the wrappers' output
load_config_from_args() {
  local previous=""
  CONFIG_FILE=""
  for arg in "$@"; do
    case $arg in
      --config=*) CONFIG_FILE=${arg#--config=}; load_config "$CONFIG_FILE" ;;
      *) if [ "$previous" = "--config" ]; then CONFIG_FILE=$arg; load_config "$arg"; fi ;;
    esac
    previous=$arg
  done
  if [ -n "${WALPIPE_CONFIG:-}" ]; then
    load_config "$WALPIPE_CONFIG"
    CONFIG_FILE=${CONFIG_FILE:-$WALPIPE_CONFIG}
  fi
}

# need_value FLAG VALUE: a flag that takes a value got one.
need_value() {
  if [ $# -lt 2 ] || [ -z "$2" ]; then die 64 "$1 needs a value"; fi
}

# export_layout: hands the layout settings set (flags, environment, config file) to the
# stages, which resolve them as `wal-store layout` does; an empty one is no setting.
export_layout() {
  local var
  for var in WALPIPE_HOME WALPIPE_SERVER WALPIPE_ARCHIVE WALPIPE_INCOMING WALPIPE_STREAMING \
    WALPIPE_ERRORS_DIR WALPIPE_LOCK_DIR WALPIPE_XLOGDB; do
    if [ -n "${!var:-}" ]; then export "${var?}"; else unset "$var"; fi
  done
  # Read by the stages that make temps, never exported by the wrappers themselves.
  [ -n "${WALPIPE_TEMP_DIR:-}" ] || unset WALPIPE_TEMP_DIR
}

# resolve_layout [FLAG...]: where the server's files are, as `wal-store layout` resolves
# them (Barman's layout under the home, each place overridable: one resolver for every
# binary and wrapper). Sets SERVER, ARCHIVE, CLOUD (0 or 1), INCOMING, STREAMING, ERRORS,
# LOCK_DIR, XLOGDB and ARCHIVE_WAL_LOCK (empty where there is none), SAY_INFO (1 when
# the log level shows info lines), and TEMP_DIR with
# --stage-temp-dir. A layout that cannot work (no archive, overlapping directories, a
# server name that is not plain, a --require'd place missing) ends the wrapper with
# wal-store's one line and code, before any lock or directory. FLAGs go to
# `wal-store layout`. Needs BIN.
# shellcheck disable=SC2120 # FLAGs are optional
resolve_layout() {
  local assignments code=0
  export_layout
  assignments=$("$BIN/wal-store" layout --shell "$@" </dev/null) || code=$?
  # wal-store said why (64, 78, ...); a status above 125 is its death, never passed on.
  if [ "$code" -gt 125 ]; then die 70 "cannot run $BIN/wal-store (exit status $code)"; fi
  [ "$code" -eq 0 ] || exit "$code"
  eval "$assignments"
}

# store_args: sets STORE_ARGS to wal-store's flags for where things are (archive, server,
# and the queues, errors/, lock dir and xlog.db when there are any), as resolved: the
# stages need not resolve them again. Needs resolve_layout.
# wal-store removes or moves a source only from those queues.
store_args() {
  STORE_ARGS=(--server="$SERVER" --archive="$ARCHIVE")
  if [ -n "$INCOMING" ]; then STORE_ARGS+=(--incoming="$INCOMING"); fi
  if [ -n "$STREAMING" ]; then STORE_ARGS+=(--streaming="$STREAMING"); fi
  if [ -n "$ERRORS" ]; then STORE_ARGS+=(--errors-dir="$ERRORS"); fi
  if [ -n "$LOCK_DIR" ]; then STORE_ARGS+=(--lock-dir="$LOCK_DIR"); fi
  if [ -n "$XLOGDB" ]; then STORE_ARGS+=(--xlogdb="$XLOGDB"); fi
}

# setting FLAG VALUE: a flag the wrapper hands to the stages as the variable they read
# (--home as WALPIPE_HOME, --errors-dir as WALPIPE_ERRORS_DIR, --endpoint-url as
# WALPIPE_ENDPOINT_URL, ...), exported: flags win over the environment and the file.
setting() {
  local var=${1#--}
  var=WALPIPE_${var//-/_}
  var=${var^^}
  printf -v "$var" '%s' "$2"
  export "${var?}"
}

# CLOUD_USAGE: the cloud part of the wrappers' usage texts.
# shellcheck disable=SC2034 # printed by the wrappers
CLOUD_USAGE='Cloud archives (--archive s3://BUCKET/PREFIX, az://CONTAINER/PREFIX, gs://BUCKET/PREFIX,
https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX; credentials from AWS_*/~/.aws,
AZURE_STORAGE_CONNECTION_STRING/_SAS_TOKEN/_KEY, GOOGLE_APPLICATION_CREDENTIALS):
  --endpoint-url URL    S3-compatible server or Azure blob endpoint [AWS_ENDPOINT_URL] (WALPIPE_ENDPOINT_URL)
  --profile NAME        AWS profile                                              (WALPIPE_PROFILE)
  --region REGION       S3 region                                                (WALPIPE_REGION)
  --timeout SECS        most seconds per WAL file, retries included [60]         (WALPIPE_TIMEOUT)
  --request-timeout SECS  most seconds per request [30]                          (WALPIPE_REQUEST_TIMEOUT)
  --xlogdb PATH         the catalogue [HOME/NAME/meta/NAME-xlog.db with --home, else none]
                                                                                 (WALPIPE_XLOGDB)
A store that does not answer exits 75 (PostgreSQL retries).'

# The wrappers' -v/-q are this run's alone: none inherited from a wrapper that ran a hook
# that runs this one.
unset WALPIPE_LOG_FLAGS

# LOG_USAGE: the log flags' part of the wrappers' usage texts.
# shellcheck disable=SC2034 # used by the wrappers
LOG_USAGE='  --verbose, -v         a line for every WAL each stage handles     (WALPIPE_LOG=debug)
  --quiet, -q           warnings and errors only; -qq: errors only  (WALPIPE_LOG=warn, error)'

# log_flag FLAG: the wrappers' -v/--verbose and -q/--quiet (-vv, -qq), handed to every
# stage as letters of WALPIPE_LOG_FLAGS, which the stages count as their own -v and -q:
# what they mean, and that -v with -q is refused, is decided in Rust (wal_core::log),
# which also checks WALPIPE_LOG whatever the flags. Returns 1 for any other argument.
log_flag() {
  case $1 in
    --verbose) WALPIPE_LOG_FLAGS=${WALPIPE_LOG_FLAGS:-}v ;;
    --quiet) WALPIPE_LOG_FLAGS=${WALPIPE_LOG_FLAGS:-}q ;;
    -*)
      [[ $1 =~ ^-[vq]+$ ]] || return 1
      WALPIPE_LOG_FLAGS=${WALPIPE_LOG_FLAGS:-}${1#-}
      ;;
    *) return 1 ;;
  esac
  export WALPIPE_LOG_FLAGS
}

# check_compression BIN ALG: refuses, with exit 64, a compression algorithm (or a
# $WALPIPE_COMPRESSION_LEVEL) that wal-compress does not accept, before the wrapper takes
# a lock, creates a directory or prints anything. "none" means no compression. Asking
# wal-compress itself (on an empty stream) keeps the list of names in one place.
check_compression() {
  local bin=$1 algorithm=$2 message code=0
  [ "$algorithm" != none ] || return 0
  # Without WALPIPE_TEMP_DIR: the directory is made later, and this run makes no temp.
  message=$(unset WALPIPE_TEMP_DIR
    "$bin/wal-compress" --algorithm="$algorithm" </dev/null 2>&1 >/dev/null) || code=$?
  [ "$code" -eq 0 ] && return 0
  message=${message%%$'\n'*}
  if [ "$code" -eq 64 ]; then die 64 "--compression $algorithm: ${message#error: }"; fi
  # A setting every stage refuses alike (WALPIPE_LOG): its line, its code.
  if [ "$code" -eq 78 ]; then die 78 "$message"; fi
  die 70 "cannot run $bin/wal-compress (exit $code): $message"
}

# --- hook scripts (Barman's pre/post archive and wal-delete hooks, through wal-hooks) ---

# hooks_or_env ARRAY VAR: when no flag filled the array named ARRAY, the one script in the
# variable named VAR (environment or config file), if set. Flags win over both.
hooks_or_env() {
  local -n hooks_list=$1
  local var=$2
  if [ "${#hooks_list[@]}" -eq 0 ] && [ -n "${!var:-}" ]; then
    hooks_list=("${!var}")
  fi
}

# first_failure CODE...: returns the first non-zero CODE (0 if none): the stage that failed
# first is the one to report, the later ones mostly failed because of it. A stage killed
# by SIGPIPE (141) failed because a later one stopped reading: that one's code, if it has
# one, is the cause.
first_failure() {
  local code broken=0
  for code in "$@"; do
    if [ "$code" -eq 141 ]; then
      broken=141
    elif [ "$code" -ne 0 ]; then
      return "$code"
    fi
  done
  return "$broken"
}

# hook_chain PHASE EVENT SPEC...: passes the records on stdin through one wal-hooks per SPEC
# ("plain:CMD" or "retry:CMD"), in the order given, to stdout; with no SPEC, through cat.
# Returns the first non-zero exit code of its stages. The hooks get neither the run lock
# (fd 9) nor the wrappers' report descriptors (3, 4): a background job started by a
# script must not keep archive-wal's lock after the run.
# Needs BIN, SERVER, ARCHIVE and CONFIG_FILE.
hook_chain() {
  local phase=$1 event=$2
  shift 2
  if [ $# -eq 0 ]; then
    cat
    return
  fi
  local spec=$1
  shift
  local -a cmd=("$BIN/wal-hooks" --phase="$phase" --event="$event" --script="${spec#*:}"
    --server="$SERVER" --archive="$ARCHIVE")
  case $spec in retry:*) cmd+=(--retry) ;; esac
  if [ -n "${CONFIG_FILE:-}" ]; then cmd+=(--configuration="$CONFIG_FILE"); fi
  if [ $# -eq 0 ]; then
    "${cmd[@]}" 3>&- 4>&- 9>&-
    return
  fi
  "${cmd[@]}" 3>&- 4>&- 9>&- | hook_chain "$phase" "$event" "$@"
  first_failure "${PIPESTATUS[@]}"
}

# check_hooks EVENT: refuses, with exit 64, hook settings wal-hooks does not accept (a bad
# $WALPIPE_HOOK_TIMEOUT), before the wrapper takes a lock or reads a queue; asks wal-hooks
# itself, on an empty stream. Needs BIN and SERVER.
check_hooks() {
  local event=$1 message code=0
  message=$("$BIN/wal-hooks" --phase pre --event="$event" --script true --server="$SERVER" \
    </dev/null 2>&1 >/dev/null) || code=$?
  [ "$code" -eq 0 ] && return 0
  message=${message%%$'\n'*}
  if [ "$code" -eq 64 ]; then die 64 "hook settings: ${message#error: }"; fi
  if [ "$code" -eq 78 ]; then die 78 "$message"; fi
  die 70 "cannot run $BIN/wal-hooks (exit $code): $message"
}

# The encryption settings every wrapper takes, as the stages read them:
# WALPIPE_RECIPIENT (comma-separated certificate files), WALPIPE_KEY (secret key file),
# WALPIPE_PASSPHRASE_FILE, WALPIPE_PASSPHRASE_COMMAND. Flags collected in RECIPIENTS
# replace the environment's list; then everything set is exported to the stages.
export_encryption() {
  if [ -n "${RECIPIENTS:-}" ]; then WALPIPE_RECIPIENT=$RECIPIENTS; fi
  export WALPIPE_RECIPIENT WALPIPE_KEY WALPIPE_PASSPHRASE_FILE WALPIPE_PASSPHRASE_COMMAND
}

# encrypting: whether archiving encrypts (Barman's `encryption = gpg`): to recipients, or
# symmetrically with a passphrase file when no --key says the passphrase is a key's.
# A passphrase command without --recipient or --key is refused, exit 64: it is Barman's
# encryption_passphrase_command, which unlocks the secret key when decrypting, so whoever
# gives it alone has left out the key (Barman refuses encryption without
# encryption_key_id), not asked for an archive that the key's passphrase alone opens; and
# archiving in plaintext instead would go unnoticed. The wrappers ask once before any
# work (check_encryption), so the refusal comes before a lock is taken or a file touched.
encrypting() {
  [ -z "${WALPIPE_RECIPIENT:-}" ] || return 0
  if [ -n "${WALPIPE_PASSPHRASE_FILE:-}" ]; then
    [ -z "${WALPIPE_KEY:-}" ]
    return
  fi
  if [ -n "${WALPIPE_PASSPHRASE_COMMAND:-}" ] && [ -z "${WALPIPE_KEY:-}" ]; then
    die 64 "--passphrase-command alone does not encrypt: it is the passphrase of a secret" \
      "key (Barman's encryption_passphrase_command); give --recipient CERT to encrypt to" \
      "the key, or --passphrase-file F to encrypt with a passphrase of its own"
  fi
  return 1
}

# check_encryption: refuses encryption settings that cannot work (see encrypting) before
# the wrapper does anything.
check_encryption() {
  encrypting || true
}

# decrypting: whether restoring can decrypt (a key or a passphrase is configured).
decrypting() {
  [ -n "${WALPIPE_KEY:-}${WALPIPE_PASSPHRASE_FILE:-}${WALPIPE_PASSPHRASE_COMMAND:-}" ]
}
