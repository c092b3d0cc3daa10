#!/bin/sh
# Image hardening and boot tuning, common to every profile. Run by the image build as an
# mmdebstrap --customize-hook on the build host: $1 is the new root file system (already holding
# the files from guest/rootfs), commands inside it run through chroot. Set by the build:
#   APPLIANCE_GUEST_USER  the unprivileged user sessions run as (uid 1000)
set -eu

root="$1"
user="${APPLIANCE_GUEST_USER:-agent}"
in_root() { chroot "$root" "$@"; }
say() { echo "customize: $*"; }

# --- users: root cannot log in; the guest user has passwordless sudo and logs in by key only
say "user $user"
if ! in_root getent passwd "$user" >/dev/null; then
    in_root useradd --create-home --uid 1000 --user-group --shell /bin/bash \
        --comment "appliance sandbox user" "$user"
fi
printf '%s ALL=(ALL:ALL) NOPASSWD:ALL\n' "$user" >"$root/etc/sudoers.d/90-appliance-$user"
chmod 0440 "$root/etc/sudoers.d/90-appliance-$user" "$root/etc/sudoers.d/appliance"
in_root visudo --check --quiet
in_root passwd --lock root >/dev/null
in_root install -d -m 0700 -o "$user" -g "$user" "/home/$user/.ssh"

# --- SSH: no host keys in the base image (each sandbox gets its own from its identity)
rm -f "$root"/etc/ssh/ssh_host_*

# --- units: the identity and growfs units on; nothing that needs the network or slows boot
say "units"
in_root systemctl enable appliance-identity.service appliance-growfs.service
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer man-db.timer getty@tty1.service systemd-pstore.service; do
    in_root systemctl disable "$unit" >/dev/null 2>&1 || true
done
# first boot (empty machine-id) must not stop and prompt for a locale on the console
# getty-static starts gettys on tty2-6 when there is no D-Bus: nobody looks at a sandbox's screen
for unit in systemd-firstboot.service systemd-networkd-wait-online.service getty-static.service; do
    in_root systemctl mask "$unit" >/dev/null 2>&1 || true
done
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nSystemMaxUse=64M\n' >"$root/etc/systemd/journald.conf.d/appliance.conf"

# --- kernel modules: drop driver families a virtual machine never uses, keep everything else
# (udev loads qemu_fw_cfg, virtio_* and friends from /lib/modules at boot)
for kver in $(ls "$root/lib/modules"); do
    k="$root/lib/modules/$kver/kernel"
    say "pruning kernel modules of $kver"
    rm -rf "$k/sound" "$k/drivers/gpu" "$k/drivers/media" "$k/drivers/net/wireless" \
        "$k/drivers/infiniband" "$k/drivers/iio" "$k/drivers/staging" "$k/drivers/comedi" \
        "$k/drivers/isdn" "$k/drivers/bluetooth" "$k/net/bluetooth" "$k/net/mac80211" \
        "$k/net/wireless" "$k/drivers/mtd" "$k/drivers/net/can" "$k/net/can"
    in_root depmod -a "$kver"
done

# --- the initramfs, with conf.d/appliance.conf (MODULES=list, virtio + ext4 only)
say "initramfs"
in_root update-initramfs -u -k all

# --- leftovers that must not be shared by every guest
rm -f "$root/var/lib/dbus/machine-id" "$root/var/lib/systemd/random-seed"
: >"$root/etc/machine-id"
