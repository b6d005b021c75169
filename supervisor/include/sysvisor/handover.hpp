// What outlives one daemon process: the containers' listeners and what is known of each, for
// the daemon that follows (a restart under systemd, `sysvisor upgrade`, SIGUSR2). See
// docs/control.md, "Restart and upgrade".
//
// Each session owns a StateFile, a memfd holding two things:
//   - the journal: every notification received and not yet answered (written by the receiver
//     thread, cleared by the answer). A daemon killed outright leaves its calls there; the
//     next one answers those the kernel still holds (ID_VALID) as if it had received them.
//   - the record (state.proto): the container's identity, policy name, mode, counters and what
//     sysvisor made for it, behind a header with the format version.
// Under systemd the listener, the StateFile and the init's pidfd go to the service's file
// descriptor store as soon as the session exists (FDSTORE=1, named sysvisor.l.ID, .s.ID,
// .p.ID) and leave it when the session ends; the daemon's private mount namespace (holding the
// device store) goes there once (sysvisor.mntns). An upgrade in place hands the same fds to the
// re-executed binary under the same names, with systemd's LISTEN_FDS protocol.
#pragma once

#include <linux/seccomp.h>
#include <sys/types.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <expected>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "state.pb.h"
#include "sysvisor/error.hpp"
#include "sysvisor/notify.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor::handover {

// The record format this binary writes; a record of a newer one is refused (its container is
// still served, by its policy's name).
inline constexpr std::uint32_t kRecordVersion = 1;
// Calls one session's journal holds at once (the receiver keeps at most max_in_flight of a
// session waiting, plus the one it is answering).
inline constexpr std::size_t kJournalSlots = 64;

class StateFile final : public notify::Journal {
 public:
  [[nodiscard]] static Result<StateFile> create();
  // A memfd a previous daemon made (checked: a memfd of the right size with our magic).
  [[nodiscard]] static Result<StateFile> adopt(UniqueFd fd);
  StateFile(StateFile&&) noexcept;
  StateFile& operator=(StateFile&&) noexcept;
  StateFile(const StateFile&) = delete;
  StateFile& operator=(const StateFile&) = delete;
  ~StateFile() override;

  [[nodiscard]] int fd() const noexcept { return fd_.get(); }

  // notify::Journal: called by NotifyFd after RECV and after SEND, from any thread.
  void received(const seccomp_notif& n) noexcept override;
  void answered(std::uint64_t id) noexcept override;
  // The emulation of call `id` begins to act (its effect may be done before its answer is
  // sent): a next daemon that finds it unanswered retries it knowing so.
  void acting(std::uint64_t id) noexcept;
  // The calls received and not answered, as the journal holds them (adoption only).
  struct Unanswered {
    seccomp_notif n;
    bool acting = false;
  };
  [[nodiscard]] std::vector<Unanswered> unanswered() const;

  [[nodiscard]] Result<void> write(const state::v1::Session& record);
  struct Read {
    state::v1::Session record;
    std::uint32_t version = 0;
  };
  // The record; an error says why it cannot be trusted (no record yet, torn, not ours). A
  // record of a newer version is returned with its version: the caller decides what to take.
  [[nodiscard]] std::expected<Read, std::string> read() const;

  struct Slot;    // one journal entry
  struct Layout;  // the memfd's first 128 bytes

 private:
  StateFile() = default;
  [[nodiscard]] Slot* slots() const noexcept;
  UniqueFd fd_;
  void* map_ = nullptr;
  std::uint32_t next_body_ = 0;  // which of the two record areas the next write uses
};

// The fds of a previous daemon, found by name in LISTEN_FDS (sd_listen_fds_with_names).
struct StoredSession {
  UniqueFd listener, state, pidfd;
};
struct Inherited {
  UniqueFd mntns;  // the daemon's private mount namespace (the device store is mounted there)
  std::map<std::string, StoredSession, std::less<>> sessions;  // by session id
  std::vector<std::string> problems;                           // names not understood (logged)
  [[nodiscard]] bool empty() const { return !mntns && sessions.empty(); }
};
// True when `name` is one of ours (sysvisor.*): `fd` is then taken (kept or closed).
bool take(Inherited& into, std::string_view name, int fd);

// The fd names.
[[nodiscard]] std::string listener_name(std::string_view session_id);
[[nodiscard]] std::string state_name(std::string_view session_id);
[[nodiscard]] std::string pidfd_name(std::string_view session_id);
inline constexpr std::string_view kMountNamespaceName = "sysvisor.mntns";

// systemd's file descriptor store, when the daemon runs under systemd (NOTIFY_SOCKET set);
// else every call does nothing. Errors are logged once.
class FdStore {
 public:
  FdStore();
  [[nodiscard]] bool enabled() const noexcept { return enabled_; }
  void store(int fd, const std::string& name);
  void remove(const std::string& name);
  // A session's listener, record memfd and init pidfd, under their names (listener_name, ...).
  void store_session(const std::string& session_id, int listener, int state, int pidfd);
  void remove_session(const std::string& session_id);

 private:
  bool enabled_ = false;
  bool warned_ = false;
};

// The binary this process runs, as a path (what /proc/self/exe names, without " (deleted)"):
// an upgrade execs whatever is at that path now.
[[nodiscard]] std::string own_binary();

// SIGTERM, SIGINT, SIGHUP, SIGUSR2: what the daemon handles.
[[nodiscard]] sigset_t daemon_signals() noexcept;

// Replaces this process with `binary argv...`, handing it `fds` (name, fd): they stay open
// under their numbers, named in the environment (SYSVISOR_HANDOVER=name=fd:..., for this pid
// in SYSVISOR_HANDOVER_PID); every other fd is O_CLOEXEC. Returns only on failure, with the
// fds as they were.
// The daemon's signals are blocked across the execve: the new binary unblocks daemon_signals()
// once its handlers are in place.
inline constexpr std::string_view kHandoverEnv = "SYSVISOR_HANDOVER";
[[nodiscard]] SysError exec_with_fds(const std::string& binary, const std::vector<std::string>& argv,
                                     const std::vector<std::pair<std::string, int>>& fds);
// In the new binary: the fds handed over, by name (made O_CLOEXEC again); the variables are
// removed from the environment. Empty unless they were meant for this process.
[[nodiscard]] std::vector<std::pair<std::string, int>> handed_over();

}  // namespace sysvisor::handover
