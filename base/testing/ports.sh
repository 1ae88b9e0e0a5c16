# shellcheck shell=bash
# Ports for the servers of shell tests, on 127.0.0.1: below 32768 (clients' ephemeral
# ports come from above and would collide) and free when drawn.

# free_ports N: N distinct ports, one a line, that nothing on 127.0.0.1 listens on.
free_ports() {
  local p ports=()
  while [[ ${#ports[@]} -lt $1 ]]; do
    p=$(shuf -i 20000-32000 -n 1)
    [[ " ${ports[*]} " != *" $p "* ]] || continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then ports+=("$p"); fi
  done
  printf '%s\n' "${ports[@]}"
}
