# shellcheck shell=bash
# Bash completion for walpipe's wrappers (walpipe-archive-command, walpipe-archive-wal,
# walpipe-restore-wal, walpipe-delete-wal, walpipe-verify-wal). The flags offered are read
# from the wrapper's own --help when asked for, so this file never holds a copy of them.
# Installed once per wrapper name: bash-completion loads a command's file by its name.

_walpipe_wrapper() {
  local cur=${COMP_WORDS[COMP_CWORD]} flags
  if [[ $cur == -* ]]; then
    # The flags the usage lines open with (not those named inside a description).
    flags=$("${COMP_WORDS[0]}" --help 2>/dev/null | grep -E '^ +--' |
      grep -oE -- '(^ +|, )--[a-z][a-z0-9-]*' | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u)
    mapfile -t COMPREPLY < <(compgen -W "$flags" -- "$cur")
  else
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
  fi
}
complete -o default -F _walpipe_wrapper walpipe-archive-command walpipe-archive-wal \
  walpipe-restore-wal walpipe-delete-wal walpipe-verify-wal
