#!/usr/bin/env bash
# Install or fetch what each matrix target needs. Idempotent; everything fetched is
# cached outside the repository, under $MEMSYS_CACHE (default /var/cache/memsyscalls
# as root, ~/.cache/memsyscalls otherwise). Never touches /etc/apt: kernels and the
# newer runsc come from Debian's archive through a private APT configuration per
# suite (its own sources, lists and cache under the cache directory).
#
#   memsyscalls prepare TARGET...   e.g. memsyscalls prepare unprivileged gvisor qemu:6.1 qemu:5.10
#   memsyscalls prepare all         (from a checkout also: ci/prepare.sh TARGET...)
#
# Targets: native unprivileged memlock-64k userns seccomp gvisor gvisor:trixie podman
#          qemu:5.10 qemu:6.1 qemu:6.12 qemu:7.2 (qemu:all)
# Prints, last, the paths it prepared (kernels as qemu:PATH, runsc as gvisor:PATH).
set -euo pipefail

if [ "$(id -u)" -eq 0 ]; then default_cache=/var/cache/memsyscalls; else default_cache=$HOME/.cache/memsyscalls; fi
CACHE=${MEMSYS_CACHE:-$default_cache}
MIRROR=${MEMSYS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${MEMSYS_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
HERE=$(cd "$(dirname "$0")" && pwd)  # shipped inside the package: no checkout needed
mkdir -p "$CACHE"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

log() { echo "memsyscalls prepare: $*" >&2; }

apt_install() {  # PACKAGE... — system packages, installed only when missing
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

private_apt() {  # SUITE "LINES..." — a private APT_CONFIG for SUITE; prints its path
    local suite=$1 sources=$2 dir=$CACHE/apt/$1
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/sources.list.d" "$dir/preferences.d"
    : > "$dir/status"
    printf '%s\n' "$sources" > "$dir/sources.list"
    cat > "$dir/apt.conf" <<CONF
Dir::Etc::SourceList "$dir/sources.list";
Dir::Etc::SourceParts "$dir/sources.list.d";
Dir::Etc::Preferences "$dir/preferences";
Dir::Etc::PreferencesParts "$dir/preferences.d";
Dir::State::Lists "$dir/lists";
Dir::State::status "$dir/status";
Dir::Cache "$dir/cache";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
Acquire::Languages "none";
APT::Sandbox::User "root";
CONF
    # Refresh the lists at most once a day.
    if [ -z "$(find "$dir/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
        APT_CONFIG=$dir/apt.conf apt-get update -qq >&2
    fi
    echo "$dir/apt.conf"
}

suite_sources() {  # SUITE — sources.list lines for it
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    case $1 in
        bookworm) printf 'deb [signed-by=%s] %s bookworm main\ndeb [signed-by=%s] %s bookworm-security main\n' \
                      "$keyring" "$MIRROR" "$keyring" "$SECURITY_MIRROR" ;;
        *) printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$MIRROR" "$1" ;;
    esac
}

apt_fetch() {  # SUITE DEST PACKAGE... — download PACKAGEs from SUITE and unpack them into DEST.tmp
    local suite=$1 dest=$2 conf work deb
    shift 2
    conf=$(private_apt "$suite" "$(suite_sources "$suite")")
    work=$(mktemp -d "$CACHE/.fetch.XXXXXX")
    (cd "$work" && APT_CONFIG=$conf apt-get download -qq "$@" >&2)
    rm -rf "$dest.tmp"
    mkdir -p "$dest.tmp"
    for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$dest.tmp"; done
    rm -rf "$work"
}

kernel_packages() {  # SUITE META — the versioned linux-image package META depends on, and the
    # linux-binary/linux-modules packages newer kernels are split into
    local conf image
    conf=$(private_apt "$1" "$(suite_sources "$1")")
    image=$(APT_CONFIG=$conf apt-cache depends "$2" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$image" ] || image=$2
    echo "$image"
    APT_CONFIG=$conf apt-cache depends "$image" 2>/dev/null \
        | awk '/Depends: linux-(binary|modules)-[0-9]/ {print $2}' | sort -u
}

prepare_kernel() {  # NAME — unpack a Debian kernel with just the modules the 9p root needs
    local name=$1 suite meta package dest
    case $name in
        5.10) suite=bullseye meta=linux-image-amd64 ;;
        6.1) suite=bookworm meta=linux-image-amd64 ;;
        6.12) suite=bookworm meta=linux-image-6.12-amd64 ;;
        7.2|sid) suite=sid meta=linux-image-amd64 ;;
        *) log "unknown kernel $name (known: 5.10 6.1 6.12 7.2)"; return 2 ;;
    esac
    dest=$CACHE/kernels/$name
    if [ -s "$dest/vmlinuz" ] && [ -d "$dest/modules" ]; then
        echo "qemu:$dest/vmlinuz"; return 0
    fi
    local packages
    packages=$(kernel_packages "$suite" "$meta")
    log "fetching" $packages "from $suite"
    # shellcheck disable=SC2086 # one package name per word
    apt_fetch "$suite" "$dest" $packages
    local tree=$dest.tmp kver
    local image
    image=$(ls "$tree"/boot/vmlinuz-* "$tree"/usr/lib/modules/*/vmlinuz 2>/dev/null | head -1 || true)
    if [ -z "$image" ]; then
        log "no vmlinuz in" $packages; return 1
    fi
    kver=$(ls "$tree/lib/modules" 2>/dev/null | head -1 || true)
    [ -n "$kver" ] || kver=$(ls "$tree/usr/lib/modules" | head -1)
    mkdir -p "$dest"
    cp "$image" "$dest/vmlinuz"
    rm -rf "$dest/modules"
    if [ -d "$tree/lib/modules/$kver" ]; then mv "$tree/lib/modules/$kver" "$dest/modules"
    else mv "$tree/usr/lib/modules/$kver" "$dest/modules"; fi
    echo "$kver" > "$dest/release"
    # Keep only the filesystem and virtio modules: the rest is hundreds of MB.
    find "$dest/modules/kernel" -type f ! -path '*/fs/*' ! -path '*/net/9p/*' ! -path '*/virtio/*' -delete
    find "$dest/modules/kernel" -type d -empty -delete
    rm -rf "$tree"
    # The uncompressed kernel boots ~5 s faster under TCG.
    python3 "$HERE/extract_vmlinux.py" "$dest/vmlinuz" "$dest/vmlinux" >&2 || log "could not extract vmlinux from $name (booting the bzImage)"
    echo "qemu:$dest/vmlinuz"
}

prepare_runsc_trixie() {
    local dest=$CACHE/runsc-trixie
    if [ ! -x "$dest/runsc" ]; then
        log "fetching runsc from trixie"
        apt_fetch trixie "$dest" runsc
        mkdir -p "$dest"
        mv "$dest.tmp/usr/bin/runsc" "$dest/runsc"
        rm -rf "$dest.tmp"
    fi
    echo "gvisor:$dest/runsc"
}

prepare_rootfs() {
    local dest=$CACHE/rootfs-bookworm
    apt_install debootstrap podman crun uidmap
    if [ ! -x "$dest/usr/bin/python3" ]; then
        log "debootstrap of bookworm (with python3) into $dest"
        rm -rf "$dest.tmp"
        debootstrap --variant=minbase --include=python3,util-linux "bookworm" "$dest.tmp" "$MIRROR" >&2
        rm -rf "$dest"
        mv "$dest.tmp" "$dest"
    fi
    echo "podman:$dest"
}

targets=("$@")
[ "${#targets[@]}" -gt 0 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
if [ "${targets[0]}" = all ]; then
    targets=(native unprivileged memlock-64k userns seccomp gvisor gvisor:trixie podman qemu:5.10 qemu:6.1 qemu:6.12 qemu:7.2)
fi
prepared=()
add() { [ -n "$1" ] || { log "preparing $target failed"; exit 1; }; prepared+=("$1"); }
for target in "${targets[@]}"; do
    case $target in
        native) ;;
        unprivileged|memlock-64k) apt_install util-linux ;;
        userns) apt_install bubblewrap ;;
        seccomp) apt_install libseccomp2 ;;
        gvisor) apt_install runsc; prepared+=("gvisor:$(command -v runsc)") ;;
        gvisor:trixie) add "$(prepare_runsc_trixie)" ;;
        gvisor:*) ;;
        podman) add "$(prepare_rootfs)" ;;
        qemu:all) apt_install qemu-system-x86 busybox-static
                  for k in 5.10 6.1 6.12 7.2; do add "$(prepare_kernel "$k")"; done ;;
        qemu:*) apt_install qemu-system-x86 busybox-static; add "$(prepare_kernel "${target#qemu:}")" ;;
        *) log "unknown target $target"; exit 2 ;;
    esac
done
# Debian's python3 and a world-readable site directory are shared by every target
# but native (see pytest_memsyscalls/matrix/runner.py); the matrix builds the site itself.
apt_install python3
printf '%s\n' "${prepared[@]}"
