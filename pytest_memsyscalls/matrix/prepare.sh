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
#          qemu-arm64:6.1 qemu-arm64-16k:6.12 qemu-ppc64le:6.1 (arm64 4 KiB/16 KiB, ppc64le 64 KiB pages)
# Prints, last, what it prepared (kernels as qemu:PATH, runsc as gvisor:PATH, foreign targets by name).
set -euo pipefail

if [ "$(id -u)" -eq 0 ]; then default_cache=/var/cache/memsyscalls; else default_cache=$HOME/.cache/memsyscalls; fi
CACHE=${MEMSYS_CACHE:-$default_cache}
MIRROR=${MEMSYS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${MEMSYS_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
HERE=$(cd "$(dirname "$0")" && pwd)  # shipped inside the package: no checkout needed
# The C sources the foreign-architecture targets are cross-compiled from: in a checkout,
# two levels up; an installed package has none (those targets then need a checkout).
REPO=$(cd "$HERE/../.." && pwd)
mkdir -p "$CACHE"
# One preparation at a time: two runs unpacking the same kernel into DEST.tmp would
# remove each other's files (seen: "no vmlinuz in linux-image-5.10.0-32-amd64").
exec 9>"$CACHE/.prepare.lock"
flock 9
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

private_apt() {  # SUITE "LINES..." [ARCH] — a private APT_CONFIG for SUITE (and ARCH); prints its path
    local suite=$1 sources=$2 arch=${3:-amd64} dir=$CACHE/apt/$1
    [ "$arch" = amd64 ] || dir=$CACHE/apt/$1-$arch
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
APT::Architecture "$arch";
APT::Architectures { "$arch"; };
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

apt_fetch() {  # SUITE[:ARCH] DEST PACKAGE... — download PACKAGEs from SUITE and unpack them into DEST.tmp
    local suite=${1%%:*} arch=amd64 dest=$2 conf work deb
    [ "$1" = "$suite" ] || arch=${1#*:}
    shift 2
    conf=$(private_apt "$suite" "$(suite_sources "$suite")" "$arch")
    work=$(mktemp -d "$CACHE/.fetch.XXXXXX")
    (cd "$work" && APT_CONFIG=$conf apt-get download -qq "$@" >&2)
    rm -rf "$dest.tmp"
    mkdir -p "$dest.tmp"
    for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$dest.tmp"; done
    rm -rf "$work"
}

kernel_packages() {  # SUITE META [ARCH] — the versioned linux-image package META depends on, and the
    # linux-binary/linux-modules packages newer kernels are split into
    local conf image
    conf=$(private_apt "$1" "$(suite_sources "$1")" "${3:-amd64}")
    image=$(APT_CONFIG=$conf apt-cache depends "$2" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$image" ] || image=$2
    echo "$image"
    APT_CONFIG=$conf apt-cache depends "$image" 2>/dev/null \
        | awk '/Depends: linux-(binary|modules)-[0-9]/ {print $2}' | sort -u
}

keep_kernel() {  # TREE DEST IMAGE NAME — from an unpacked kernel package tree: the image as
    # DEST/NAME, its release, its build configuration as DEST/config (the guest sees it as
    # /boot/config-RELEASE, so its promises are decided by the kernel's configuration, not
    # probed), and only the filesystem, 9p and virtio modules (the rest is hundreds of MB);
    # the tree is removed
    local tree=$1 dest=$2 image=$3 name=$4 kver config
    kver=$(ls "$tree/lib/modules" 2>/dev/null | head -1 || true)
    [ -n "$kver" ] || kver=$(ls "$tree/usr/lib/modules" | head -1)
    mkdir -p "$dest"
    cp "$image" "$dest/$name"
    config=$(ls "$tree"/boot/config-* 2>/dev/null | head -1 || true)
    if [ -n "$config" ]; then cp "$config" "$dest/config"; fi  # else the caller asks the headers package
    rm -rf "$dest/modules"
    if [ -d "$tree/lib/modules/$kver" ]; then mv "$tree/lib/modules/$kver" "$dest/modules"
    else mv "$tree/usr/lib/modules/$kver" "$dest/modules"; fi
    echo "$kver" > "$dest/release"
    find "$dest/modules/kernel" -type f ! -path '*/fs/*' ! -path '*/net/9p/*' ! -path '*/virtio/*' -delete
    find "$dest/modules/kernel" -type d -empty -delete
    rm -rf "$tree"
}

config_from_headers() {  # SUITE[:ARCH] DEST — the kernel's config from its headers package, where
    # the image packages do not carry boot/config-RELEASE (sid's 7.x split packaging keeps
    # it only as /usr/src/linux-headers-RELEASE/.config)
    local dest=$2 kver
    kver=$(cat "$dest/release")
    # Without a config the target says it is unavailable (and names prepare); the other
    # targets of this run are prepared all the same.
    apt_fetch "$1" "$dest.headers" "linux-headers-$kver" || { log "no linux-headers-$kver"; return 0; }
    if [ -s "$dest.headers.tmp/usr/src/linux-headers-$kver/.config" ]; then
        cp "$dest.headers.tmp/usr/src/linux-headers-$kver/.config" "$dest/config"
    else
        log "no kernel config in linux-headers-$kver either"
    fi
    rm -rf "$dest.headers.tmp"
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
    if [ -s "$dest/vmlinuz" ] && [ -d "$dest/modules" ] && [ -s "$dest/config" ]; then
        echo "qemu:$dest/vmlinuz"; return 0
    fi
    local packages
    packages=$(kernel_packages "$suite" "$meta")
    log "fetching" $packages "from $suite"
    # shellcheck disable=SC2086 # one package name per word
    apt_fetch "$suite" "$dest" $packages
    local tree=$dest.tmp
    local image
    image=$(ls "$tree"/boot/vmlinuz-* "$tree"/usr/lib/modules/*/vmlinuz 2>/dev/null | head -1 || true)
    if [ -z "$image" ]; then
        log "no vmlinuz in" $packages; return 1
    fi
    keep_kernel "$tree" "$dest" "$image" vmlinuz
    [ -s "$dest/config" ] || config_from_headers "$suite" "$dest"
    # The uncompressed kernel boots ~5 s faster under TCG.
    python3 "$HERE/extract_vmlinux.py" "$dest/vmlinuz" "$dest/vmlinux" >&2 || log "could not extract vmlinux from $name (booting the bzImage)"
    echo "qemu:$dest/vmlinuz"
}

# --- foreign guests: arm64 (4 KiB, 16 KiB pages) and ppc64le (64 KiB pages) under qemu TCG.
# Each needs a kernel of its architecture, a root filesystem of its architecture with
# Python 3.11 (Debian 12's, so the host's .pyc files and the cp311 tag fit) and the C parts
# built for it. The root filesystem is the dependency closure of python3 unpacked with
# dpkg-deb: no maintainer scripts run, so nothing foreign executes on the host (no
# binfmt_misc, no qemu-user) and nothing on the host changes.
foreign_kernel_spec() {  # NAME — "suite arch meta" of a foreign kernel
    case $1 in
        arm64-6.1) echo "bookworm arm64 linux-image-arm64" ;;
        arm64-16k-6.12) echo "trixie arm64 linux-image-arm64-16k" ;;
        ppc64le-6.1) echo "bookworm ppc64el linux-image-powerpc64le" ;;
        *) log "unknown foreign kernel $1 (known: arm64-6.1 arm64-16k-6.12 ppc64le-6.1)"; return 2 ;;
    esac
}

triplet() {  # DEBIAN-ARCH — the GNU triplet
    case $1 in arm64) echo aarch64-linux-gnu ;; ppc64el) echo powerpc64le-linux-gnu ;; *) return 2 ;; esac
}

prepare_foreign_kernel() {  # NAME — the kernel and its 9p/virtio modules, under kernels/NAME
    local name=$1 suite arch meta dest packages tree image
    read -r suite arch meta <<<"$(foreign_kernel_spec "$name")"
    dest=$CACHE/kernels/$name
    if [ -s "$dest/kernel" ] && [ -d "$dest/modules" ] && [ -s "$dest/config" ]; then echo "$dest/kernel"; return 0; fi
    packages=$(kernel_packages "$suite" "$meta" "$arch")
    log "fetching" $packages "($arch) from $suite"
    # shellcheck disable=SC2086 # one package name per word
    apt_fetch "$suite:$arch" "$dest" $packages || return 1
    tree=$dest.tmp
    # arm64: the Image (EFI stub) as is; ppc64le: the ELF vmlinux.
    image=$(ls "$tree"/boot/vmlinuz-* "$tree"/boot/vmlinux-* "$tree"/usr/lib/modules/*/vmlinuz 2>/dev/null | head -1 || true)
    [ -n "$image" ] || { log "no kernel image in" $packages; return 1; }
    keep_kernel "$tree" "$dest" "$image" kernel
    [ -s "$dest/config" ] || config_from_headers "$suite:$arch" "$dest"
    echo "$dest/kernel"
}

compile_guest_stdlib() {  # ROOTFS — what python3.11-minimal's postinst (py3compile) would make
    # The standard library's .pyc files, written by the host's python3.11: the same 3.11,
    # so the same bytecode and the same cpython-311 tag, checked against each source's
    # mtime, which dpkg-deb -x kept. Without them every Python process in the guest
    # compiled each module it imported from source (PYTHONDONTWRITEBYTECODE: every time),
    # 6 s of the ~30 s a pytest process took to start under TCG.
    local root=$1
    [ -f "$root/usr/lib/python3.11/__pycache__/os.cpython-311.pyc" ] && return 0
    apt_install python3
    log "byte-compiling the guest's standard library ($root)"
    /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
        log "the host's python3 is not 3.11: the guest's standard library stays uncompiled"; return 0; }
    /usr/bin/python3 -m compileall -q -j 0 -s "$root" -p / "$root/usr/lib/python3.11" "$root/usr/lib/python3/dist-packages" \
        >/dev/null 2>&1 || true
    [ -f "$root/usr/lib/python3.11/__pycache__/os.cpython-311.pyc" ] || log "byte-compiling $root failed"
}

prepare_guest_rootfs() {  # DEBIAN-ARCH — bookworm's python3 (+ busybox-static, coreutils, dash) for ARCH
    local arch=$1 dest=$CACHE/guest-rootfs/bookworm-$1 conf work deb
    if [ -x "$dest/usr/bin/python3.11" ] && [ -x "$dest/bin/busybox" ]; then
        mkdir -p "$dest/boot"  # made before /boot became a mount point (the kernel's config)
        compile_guest_stdlib "$dest"
        echo "$dest"; return 0
    fi
    conf=$(private_apt bookworm "$(suite_sources bookworm)" "$arch")
    work=$(mktemp -d "$CACHE/.rootfs.XXXXXX")
    log "downloading python3 and its dependencies ($arch) from bookworm"
    APT_CONFIG=$conf apt-get install -y -qq --download-only --no-install-recommends \
        -o Dir::Cache::archives="$work" -o Debug::NoLocking=1 \
        python3 busybox-static coreutils dash libc-bin >&2 || return 1
    rm -rf "$dest.tmp"
    mkdir -p "$dest.tmp"
    for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$dest.tmp"; done
    rm -rf "$work"
    # What maintainer scripts would have made, and the guest's mount points (/host: the
    # host's root over 9p, read-only, for the site directory; /boot: the kernel's config).
    [ -e "$dest.tmp/bin/sh" ] || ln -s dash "$dest.tmp/bin/sh"
    mkdir -p "$dest.tmp"/{host,proc,sys,dev,tmp,run,root,var/tmp,etc,boot}
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$dest.tmp/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$dest.tmp/etc/group"
    compile_guest_stdlib "$dest.tmp"
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
    echo "$dest"
}

prepare_guest_native() {  # DEBIAN-ARCH — the probe extension and the brk helper, cross-compiled
    local arch=$1 tri hash dest headers cc
    tri=$(triplet "$arch")
    apt_install "gcc-$tri" "libc6-dev-$arch-cross"
    if [ ! -d "$REPO/csrc" ]; then
        log "the $arch targets cross-compile the C parts from csrc/, which only a checkout has"; return 1
    fi
    hash=$(cd "$REPO/csrc" && LC_ALL=C; cat $(LC_ALL=C ls *.c) $(LC_ALL=C ls *.h) | sha256sum | cut -c1-12)  # = targets.native_source_hash
    dest=$CACHE/native/$arch-$hash
    if [ -x "$dest/memsys-brk-helper" ] && ls "$dest"/_probe.cpython-311-*.so >/dev/null 2>&1; then
        echo "$dest"; return 0
    fi
    headers=$CACHE/guest-dev/bookworm-$arch
    if [ ! -f "$headers/usr/include/$tri/python3.11/pyconfig.h" ]; then
        apt_fetch "bookworm:$arch" "$headers" libpython3.11-dev || return 1
        rm -rf "$headers"; mv "$headers.tmp" "$headers"
    fi
    cc=$tri-gcc
    rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
    log "cross-compiling the C parts for $arch ($hash)"
    "$cc" -O2 -Wall -Wextra -fno-strict-aliasing -fPIC -shared \
        -I "$headers/usr/include" -I "$headers/usr/include/python3.11" \
        "$REPO/csrc/probe.c" "$REPO/csrc/child_report.c" "$REPO/csrc/probe_module.c" \
        -o "$dest.tmp/_probe.cpython-311-$tri.so" >&2 || return 1
    "$cc" -O2 -Wall -Wextra -fno-strict-aliasing "$REPO/csrc/brk_helper.c" "$REPO/csrc/probe.c" \
        -o "$dest.tmp/memsys-brk-helper" >&2 || return 1
    rm -rf "$dest"; mv "$dest.tmp" "$dest"
    echo "$dest"
}

prepare_foreign() {  # TARGET (qemu-arm64:6.1, qemu-arm64-16k:6.12, qemu-ppc64le:6.1)
    local kind=${1%%:*} version=${1#*:} name arch
    name=${kind#qemu-}-$version
    read -r _ arch _ <<<"$(foreign_kernel_spec "$name")"
    case $arch in arm64) apt_install qemu-system-arm ;; ppc64el) apt_install qemu-system-ppc ;; esac
    # (Command substitution does not inherit set -e: each step says whether it worked.)
    prepare_foreign_kernel "$name" >/dev/null || return 1
    prepare_guest_rootfs "$arch" >/dev/null || return 1
    prepare_guest_native "$arch" >/dev/null || return 1
    echo "$1"
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
    targets=(native unprivileged memlock-64k userns seccomp gvisor gvisor:trixie podman qemu:5.10 qemu:6.1 qemu:6.12 qemu:7.2
             qemu-arm64:6.1 qemu-arm64-16k:6.12 qemu-ppc64le:6.1)
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
        qemu-arm64:*|qemu-arm64-16k:*|qemu-ppc64le:*) add "$(prepare_foreign "$target")" ;;
        qemu:*) apt_install qemu-system-x86 busybox-static; add "$(prepare_kernel "${target#qemu:}")" ;;
        *) log "unknown target $target"; exit 2 ;;
    esac
done
# Debian's python3 and a world-readable site directory are shared by every target
# but native (see pytest_memsyscalls/matrix/runner.py); the matrix builds the site itself.
apt_install python3
printf '%s\n' "${prepared[@]}"
