//! The example initramfs's `/init` decides, on a disk, what is installed and
//! whether a new root is still on trial. `tests/boot_init.sh` runs its real
//! decision functions (`examples/initramfs/init`, sourced) under busybox sh
//! against a fake disk, a stub minipull and power cuts, one case per test;
//! the qemu boot test (`examples/initramfs/test.sh`) runs the whole boot.

mod common;
use common::*;
use std::process::Command;

/// Run one harness case, bounded (each boot in it is bounded too).
fn case(name: &str) {
    require("busybox");
    let work = TempDir::new(&format!("boot-init-{name}"));
    let root = env!("CARGO_MANIFEST_DIR");
    let o = Command::new("timeout")
        .args([
            "120",
            "busybox",
            "sh",
            "tests/boot_init.sh",
            "examples/initramfs/init",
            name,
        ])
        .arg(work.path())
        .current_dir(root)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains(&format!("ok: {name}")),
        "{name}: {:?}\n{out}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A snapshot of a running device carries the mark; the power goes between
/// the install and anything after it: the new root is still on trial.
#[test]
fn a_cut_right_after_the_swap_leaves_the_new_root_on_trial_even_with_a_shipped_mark() {
    case("ships_file_cut");
}

#[test]
fn image_shipping_the_mark_as_a_directory_is_rolled_back() {
    case("ships_dir");
}

/// A link to /init's own state is neither followed to count the mark nor
/// written through.
#[test]
fn image_shipping_the_mark_as_a_symlink_is_rolled_back() {
    case("ships_symlink_cut");
}

/// A FIFO is not a mark, and nothing reads it (the boot would hang).
#[test]
fn image_shipping_the_mark_as_a_fifo_is_rolled_back_and_never_hangs() {
    case("ships_fifo_cut");
    case("ships_fifo");
}

/// A cut during the download leaves the old root, off trial; the next boot installs.
#[test]
fn cut_before_the_swap_keeps_the_old_root_and_retries() {
    case("cut_before_swap");
}

/// The record, not minipull's exit code, says what is installed.
#[test]
fn non_zero_exit_after_the_swap_still_puts_the_new_root_on_trial() {
    case("exit_9_is_installed");
    case("exit_7_is_installed");
}

#[test]
fn a_key_brings_no_downgrade_and_the_disk_a_time_floor() {
    case("no_downgrade_with_key");
}

/// A keyless identity (with its `*`), issuer and trusted root reach the
/// install as given; without an issuer, minipull.identity= is the repository.
#[test]
fn keyless_settings_reach_the_install_unexpanded() {
    case("keyless_identity");
    case("identity_alone_is_the_repository");
    case("identity_url_without_issuer");
}

/// A key, trusted root or CA on the disk or in the new root is refused,
/// whatever its spelling (`//`, `..`, a link from the initramfs).
#[test]
fn keys_roots_and_cas_come_only_from_the_initramfs() {
    case("pins_only_from_the_initramfs");
}

#[test]
fn the_clock_is_set_forward_to_the_time_floor_never_back() {
    case("clock_forward");
}
