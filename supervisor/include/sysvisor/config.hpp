// The daemon's configuration file (/etc/sysvisor/sysvisor.yaml, `sysvisor serve --config`):
// who may ask for which policy, the default policy, socket permissions, the audit sink.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <expected>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sysvisor/policy.hpp"

namespace sysvisor::config {

// One entry of `access:`: these peers may ask for these policies.
struct Grant {
  bool any_user = false;              // `users: ["*"]`
  std::vector<uid_t> uids;            // by number or by name (resolved at load)
  std::vector<gid_t> gids;            // the peer's primary or supplementary group
  std::vector<std::string> policies;  // names; "*" is every policy
  // Learn mode at launch (agent --learn, OCI learn=true or io.sysvisor.learn=true) for these
  // of the entry's policies: `learn: true` is "*" (all of them), absent or false none.
  std::vector<std::string> learn;
  policy::Position pos;
};

struct Config {
  std::filesystem::path file;  // empty: the built-in defaults
  std::filesystem::path runtime_dir = "/run/sysvisor";
  std::filesystem::path policies_dir = "/etc/sysvisor/policies.d";
  std::string default_policy;  // for OCI handoffs that name none; empty: none
  mode_t socket_mode = 0666;   // agent.sock and oci.sock
  std::optional<gid_t> socket_group;
  std::string audit = "-";  // "-" (stdout), "syslog" or a file
  // Audit records per container: a token bucket (docs/audit.md). per_second 0: unlimited.
  struct AuditRate {
    std::uint32_t per_second = 200;
    std::uint32_t burst = 400;
    // What all containers of one non-root owner uid share, in containers' worth (rate and
    // burst times this); 0: no per-uid budget. Root's containers have none.
    std::uint32_t per_uid = 1;
  } audit_rate;
  // Per-uid bounds (docs/policy.md, the configuration table). Each supervised session costs the
  // daemon a receiver thread, one or two worker threads and a few fds: the session bound is the
  // thread and fd bound. Root (uid 0) is never bounded per uid.
  struct Limits {
    std::uint32_t sessions_per_uid = 32;    // live sessions of one owner uid; 0: unbounded
    std::uint32_t handshakes_per_uid = 16;  // handoffs in progress per uid, on each socket
  } limits;
  // control.sock: root only (0600), or also this group (0660).
  std::optional<gid_t> control_group;
  std::string audit_failure = "keep";  // keep | refuse: what a call gets when its record cannot be written
  std::string metrics_listen;          // ADDRESS:PORT for Prometheus metrics; empty: none
  // Built-in default: root may use every policy, nobody else any; nobody may override a
  // policy's mode with learn mode at launch.
  std::vector<Grant> access{Grant{false, {0}, {}, {"*"}, {}, {}}};
};

// A peer as SO_PEERCRED and SO_PEERGROUPS describe it.
struct Peer {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  // Whose share of a socket's connections this peer uses (listen.hpp, charged_uid): `uid`, or
  // for a process in a user namespace a non-root user made, that user.
  uid_t charged = 0;
};

[[nodiscard]] std::expected<Config, std::vector<policy::LoadError>> parse_config(std::string_view text,
                                                                                 const std::string& file);
[[nodiscard]] std::expected<Config, std::vector<policy::LoadError>> load_config(
    const std::filesystem::path& path);

// Empty when `peer` may use `policy_name`; else the reason, for the peer and the log.
[[nodiscard]] std::string refusal(const Config& config, const Peer& peer, std::string_view policy_name);

// Empty when `peer` may run `policy_name` in learn mode at launch (whatever the policy's own
// mode): an entry of `access:` that matches the peer grants the policy and names it under
// `learn`. Else the reason, for the log.
[[nodiscard]] std::string learn_refusal(const Config& config, const Peer& peer, std::string_view policy_name);

}  // namespace sysvisor::config
