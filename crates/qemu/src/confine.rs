//! How QEMU is confined: which uid it runs as ([`user`]), its cgroup
//! ([`cgroup`]), whether its seccomp sandbox is available ([`probe`]), and
//! the decision that puts them together ([`decide`]) — pure, from facts.
//! docs/security.md says what each layer stops.

pub mod cgroup;
pub mod decide;
pub mod facts;
pub mod firewall;
pub mod probe;
pub mod user;

pub use decide::{decide, ConfineFacts, ConfinePlan, QemuUser, VmNeeds};
