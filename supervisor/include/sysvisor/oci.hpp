// The OCI seccomp agent protocol, pure part: the ContainerProcessState a runtime (runc, crun,
// podman through either) sends to `linux.seccomp.listenerPath` with the listener fd, and the
// choice of policy it implies. No fds, no sockets: bytes in, values out (unit-tested).
//
// What real runtimes send (design.md, "Real engines"):
//   {"ociVersion","fds":["seccompFd"],"pid","metadata",
//    "state":{"ociVersion","id","status","pid","bundle","annotations"}}
// runc: compact, ociVersion "1.0.2-dev", never closes the connection. crun: pretty-printed with
// a trailing newline, ociVersion "0.2.0"; crun exec sends pid 0, state.pid 0 and bundle ".".
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <expected>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace sysvisor::oci {

// At least 64 KiB must be accepted (many annotations); more than this is refused.
inline constexpr std::size_t kMaxPayloadBytes = 1024 * 1024;
inline constexpr std::string_view kSeccompFdName = "seccompFd";
inline constexpr std::string_view kPolicyAnnotation = "io.sysvisor.policy";

struct ContainerState {
  std::string oci_version;
  std::string id;
  std::string status;
  pid_t pid = 0;
  std::string bundle;
  std::map<std::string, std::string, std::less<>> annotations;
};

struct ProcessState {
  std::string oci_version;
  std::vector<std::string> fds;  // names of the SCM_RIGHTS fds, in order; may be absent (empty)
  pid_t pid = 0;                 // the process whose listener this is; 0 from crun exec
  std::string metadata;          // linux.seccomp.listenerMetadata, verbatim
  ContainerState state;
  bool pretty = false;  // the payload spanned several lines (crun pretty-prints, runc does not)
};

// Where a stream payload stands: runc never closes its connection, so the payload is complete
// when the bytes so far hold one whole JSON object (then only whitespace).
enum class Scan { Incomplete, Complete, NotAnObject };
[[nodiscard]] Scan scan_object(std::string_view bytes);

// The same judgement made as the bytes arrive: feed() each chunk once, and every byte is looked
// at once (a peer that sends a payload one byte at a time costs time linear in its size, not
// quadratic). After NotAnObject the answer stays NotAnObject.
class ObjectScanner {
 public:
  Scan feed(std::string_view chunk);
  [[nodiscard]] Scan state() const noexcept { return state_; }
  [[nodiscard]] std::size_t scanned() const noexcept { return scanned_; }

 private:
  Scan state_ = Scan::Incomplete;
  bool started_ = false;  // the opening brace was seen
  bool in_string_ = false;
  bool escaped_ = false;
  std::size_t depth_ = 0;
  std::size_t scanned_ = 0;
};

// Parses a complete payload. Any field order; unknown fields are ignored; the required ones
// (state.id, a pid somewhere) are checked. The error says what is wrong, for a log line.
[[nodiscard]] std::expected<ProcessState, std::string> parse_process_state(std::string_view bytes);

// The pid whose identity is read from /proc: `pid`, or `state.pid` when `pid` is 0. 0 when
// both are 0, as crun 1.8.1's exec sends them: the intake then finds the process itself.
[[nodiscard]] pid_t live_pid(const ProcessState& ps);

// Index of the listener in the received fds: the position of "seccompFd" in `fds`, or 0 when
// the payload names no fds. An error when `fds` is present without "seccompFd".
[[nodiscard]] std::expected<std::size_t, std::string> listener_index(const ProcessState& ps);

// listenerMetadata: lines of `key=value`. `policy=NAME` chooses the policy; the other keys are
// labels. Lines without `=` are reported in `ignored`, not fatal: the runtime cannot be told.
struct Metadata {
  std::string policy;  // empty when not given
  std::map<std::string, std::string, std::less<>> labels;
  std::vector<std::string> ignored;
};
[[nodiscard]] Metadata parse_metadata(std::string_view metadata);

enum class PolicySource { Metadata, Annotation, Default };
[[nodiscard]] const char* to_string(PolicySource source);

struct PolicyChoice {
  std::string name;
  PolicySource source = PolicySource::Default;
};

// metadata `policy=NAME`, else annotation io.sysvisor.policy, else `default_policy`; an error
// when none of them names a policy.
[[nodiscard]] std::expected<PolicyChoice, std::string> select_policy(const ProcessState& ps,
                                                                     const Metadata& metadata,
                                                                     std::string_view default_policy);

// A guess, from the payload's shape and annotations, for logs only: "runc", "crun",
// "podman/runc", "podman/crun", "podman", or "oci" when nothing tells.
[[nodiscard]] std::string guess_engine(const ProcessState& ps);

// Container ids as sysvisor accepts them: 1 to 128 printable ASCII characters, no spaces.
[[nodiscard]] bool valid_container_id(std::string_view id);

}  // namespace sysvisor::oci
