#!/usr/bin/env bash
# Installs what the build and the tests need, when it is missing: Debian
# packages (as root, with apt-get) and npm modules. Prints exactly what to
# install when it cannot install it itself.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
have chromium || need+=(chromium)
[[ -x /usr/sbin/useradd && -x /usr/sbin/userdel ]] || need+=(passwd) # OS accounts of local workspaces (server as root)
have node || need+=(nodejs)
have npm || need+=(npm)
have vim || need+=(vim)
have htop || need+=(htop)
have less || need+=(less)
have ip || need+=(iproute2)
have nft || need+=(nftables)
have ssh || need+=(openssh-client)
have curl || need+=(curl)
have iperf3 || need+=(iperf3)
/usr/bin/python3 -c 'import notebook' >/dev/null 2>&1 || need+=(python3-notebook) # the default template's web IDE

if ((${#need[@]})); then
  if [[ $(id -u) -eq 0 ]] && have apt-get; then
    echo "installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing: ${need[*]}" >&2
    echo "install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi
if ! have go; then
  echo "Go is missing: install Go 1.26 from https://go.dev/dl/" >&2
  exit 1
fi
