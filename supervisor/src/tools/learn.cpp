#include "sysvisor/learn.hpp"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "audit.pb.h"
#include "sysvisor/policy.hpp"
#include "sysvisor/syscalls.hpp"

namespace sysvisor::tools {
namespace {

using Record = audit::v1::Event;

// A YAML double-quoted scalar (JSON's escapes are YAML's).
std::string quote(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// A string argument of a call literal (docs/policy-tools.md): C escapes for " and \.
std::string literal_string(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

std::string parent_of(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return "/";
  return path.substr(0, slash);
}

bool under(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() + 1 && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

// What a list of examples looks like in a comment: the first few, then how many more.
std::string examples(const std::set<std::string>& seen, std::size_t at_most = 4) {
  std::string out;
  std::size_t n = 0;
  for (const auto& s : seen) {
    if (n == at_most) {
      out += ", ... (" + std::to_string(seen.size() - at_most) + " more)";
      break;
    }
    out += (n == 0 ? "" : ", ") + s;
    ++n;
  }
  return out;
}

std::string yaml_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i == 0 ? "" : ", ") + quote(items[i]);
  return out + "]";
}

std::string yaml_list(const std::set<std::string>& items) {
  return yaml_list(std::vector<std::string>(items.begin(), items.end()));
}

std::optional<std::uint64_t> hex_value(const std::string& s) {
  try {
    std::size_t used = 0;
    const std::uint64_t v = std::stoull(s, &used, 0);
    if (used != s.size()) return std::nullopt;
    return v;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

struct Device {
  std::string type;  // "char" | "block"
  std::uint32_t major = 0, minor = 0;
  auto operator<=>(const Device&) const = default;
  [[nodiscard]] std::string numbers() const { return std::to_string(major) + ":" + std::to_string(minor); }
};

// The devices a learned policy grants: nodes that give a container nothing of the host's (the
// memory-less char devices of shipped rootless-devices, and fuse and tun, which a user namespace
// may use once it has the node). In learn mode every call goes to the kernel, which refuses a
// rootless container every device node, so sysvisor cannot tell a device the workload needs
// from one it merely tried (`mknod /dev/sdb b 8 16`): any other device is written commented
// out, with a warning, for the author to decide.
constexpr std::array<std::pair<std::uint32_t, std::uint32_t>, 8> kHarmlessChar{
    {{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {10, 229}, {10, 200}}};

bool harmless(const Device& d) {
  return d.type == "char" &&
         std::ranges::find(kHarmlessChar, std::pair{d.major, d.minor}) != kHarmlessChar.end();
}

// Filesystem types the kernel itself mounts for a user namespace's root (FS_USERNS_MOUNT, and
// fuse's subtypes): learned as `allow`, the kernel deciding. The mount emulator mounts from a
// block device or an image only, so `emulate` would break them (the source "tmpfs" is no file).
bool kernel_mounts(const std::string& fstype) {
  static constexpr std::array<std::string_view, 11> kTypes{"tmpfs",   "ramfs",  "proc",   "sysfs",
                                                           "devpts",  "mqueue", "cgroup", "cgroup2",
                                                           "overlay", "fuse",   "binder"};
  return std::ranges::find(kTypes, fstype) != kTypes.end() || fstype.starts_with("fuse.");
}

struct Seen {
  // mknod
  std::map<Device, std::set<std::string>> devices;  // -> paths
  std::map<Device, std::size_t> device_count;
  std::set<std::string> mknod_syscalls;
  std::vector<std::string> cases;
  // mount: emulated (block filesystems) and the kernel's own (tmpfs & co.)
  std::set<std::string> fstypes, mount_targets, mount_sources, umount_targets;
  std::set<std::string> kernel_fstypes, kernel_targets;
  std::size_t mounts = 0, kernel_mounts = 0, umounts = 0;
  std::vector<std::string> not_learned;  // comments: what could not become a rule
  // xattrs
  std::set<std::string> xattr_set_names, xattr_remove_names;
  std::size_t xattr_sets = 0, xattr_removes = 0;
  // scheduling
  std::optional<std::int64_t> max_priority, min_nice;
  std::size_t sched_calls = 0, nice_calls = 0;
  std::set<std::string> cases_seen;
  std::size_t records = 0;
};

bool is_xattr_set(std::string_view s) {
  return s == "setxattr" || s == "lsetxattr" || s == "fsetxattr";
}
bool is_xattr_remove(std::string_view s) {
  return s == "removexattr" || s == "lremovexattr" || s == "fremovexattr";
}

void add_case(Seen& seen, const std::string& call, const std::string& expect) {
  const std::string line = "  - {call: " + quote(call) + ", expect: " + expect + "}\n";
  if (seen.cases_seen.insert(line).second) seen.cases.push_back(line);
}

constexpr std::uint64_t kMsBind = 4096, kMsMove = 8192, kMsRemount = 32;

void take(Seen& seen, const Record& r) {
  const std::string& sc = r.syscall();
  const auto& a = r.args();
  const std::string path = a.paths_size() > 0 ? a.paths(0) : a.path();
  ++seen.records;
  if (sc == "mknod" || sc == "mknodat") {
    if (a.type() != "char" && a.type() != "block") return;
    const std::size_t colon = a.device().find(':');
    const auto major = hex_value(a.device().substr(0, colon));
    const auto minor = colon == std::string::npos ? std::nullopt : hex_value(a.device().substr(colon + 1));
    if (!major || !minor || path.empty() || path.front() != '/') {
      seen.not_learned.push_back("mknod of " + a.device() + " at `" + path +
                                 "` (its path or device was not read)");
      return;
    }
    const Device d{a.type(), static_cast<std::uint32_t>(*major), static_cast<std::uint32_t>(*minor)};
    seen.devices[d].insert(path);
    ++seen.device_count[d];
    seen.mknod_syscalls.insert(sc);
    const std::string mode = a.mode().empty() ? "0600" : a.mode();
    const std::string expect = d.type == "char" && d.major == 0 && d.minor == 0 ? "allow"
                               : harmless(d)                                    ? "emulate audited"
                                                                                : "deny EPERM audited";
    add_case(seen,
             "mknod(" + literal_string(path) + ", " + (d.type == "char" ? "S_IFCHR|" : "S_IFBLK|") + mode +
                 ", " + d.numbers() + ")",
             expect);
  } else if (sc == "mount") {
    const std::uint64_t flags = hex_value(a.flags()).value_or(0);
    if ((flags & (kMsBind | kMsMove | kMsRemount)) != 0 || !a.has_fstype() || a.fstype().empty() ||
        !a.has_target()) {
      seen.not_learned.push_back("mount of `" + a.source() + "` at `" + a.target() + "` with flags " +
                                 a.flags() +
                                 " (bind, move and remount need grants written by hand: docs/policy.md)");
      return;
    }
    const std::string target = a.paths_size() > 0 ? a.paths(0) : a.target();
    const bool kernel = kernel_mounts(a.fstype());
    if (kernel) {
      ++seen.kernel_mounts;
      seen.kernel_fstypes.insert(a.fstype());
      seen.kernel_targets.insert(target);
    } else {
      ++seen.mounts;
      seen.fstypes.insert(a.fstype());
      seen.mount_targets.insert(target);
      seen.mount_sources.insert(a.source());
    }
    add_case(seen,
             "mount(" + literal_string(a.source()) + ", " + literal_string(target) + ", " +
                 literal_string(a.fstype()) + ", " + std::to_string(flags) + ", NULL)",
             kernel ? "allow" : "emulate audited");
  } else if (sc == "umount2") {
    if (path.empty()) return;
    ++seen.umounts;
    seen.umount_targets.insert(path);
    add_case(
        seen,
        "umount2(" + literal_string(path) + ", " + std::to_string(hex_value(a.flags()).value_or(0)) + ")",
        "emulate audited");
  } else if (is_xattr_set(sc) || is_xattr_remove(sc)) {
    if (!a.has_xattr()) return;
    const bool set = is_xattr_set(sc);
    (set ? seen.xattr_set_names : seen.xattr_remove_names).insert(a.xattr());
    ++(set ? seen.xattr_sets : seen.xattr_removes);
    const std::string file = path.empty() || path.front() != '/' ? "/" : path;
    if (set) {
      add_case(seen,
               "setxattr(" + literal_string(file) + ", " + literal_string(a.xattr()) + ", NULL, " +
                   std::to_string(a.value_size()) + ", 0)",
               "emulate audited");
    } else {
      add_case(seen, "removexattr(" + literal_string(file) + ", " + literal_string(a.xattr()) + ")",
               "emulate audited");
    }
  } else if (sc == "sched_setscheduler" || sc == "sched_setattr") {
    if (!a.has_priority()) return;
    ++seen.sched_calls;
    seen.max_priority =
        std::max(seen.max_priority.value_or(a.priority()), static_cast<std::int64_t>(a.priority()));
    if (sc == "sched_setscheduler" && a.has_sched_policy()) {
      add_case(seen,
               "sched_setscheduler(0, " + policy::sched_policy_name(a.sched_policy()) +
                   ", {sched_priority=" + std::to_string(a.priority()) + "})",
               "emulate audited");
    }
  } else if (sc == "setpriority") {
    if (!a.has_nice()) return;
    ++seen.nice_calls;
    seen.min_nice = std::min(seen.min_nice.value_or(a.nice()), static_cast<std::int64_t>(a.nice()));
    add_case(seen, "setpriority(0, 0, " + std::to_string(a.nice()) + ")", "emulate audited");
  } else {
    seen.not_learned.push_back(sc + " (sysvisor learns device nodes, mounts, xattrs and scheduling)");
  }
}

std::string write_policy(const Seen& seen, const LearnOptions& options,
                         const std::vector<std::string>& notes) {
  std::string y;
  y += "# " + options.name + ": learned by `sysvisor policy learn` from " + std::to_string(seen.records) +
       " records of " +
       (options.container.empty() ? std::string("every container") : "container " + options.container) +
       (options.owner ? " owned by uid " + std::to_string(*options.owner) : std::string(" of every owner")) +
       " in " + options.file + ".\n";
  y += "# What was seen is granted (emulated), generalised a little; everything else these calls\n";
  y += "# do is refused with EPERM (umount2 excepted: the kernel's, but for what sysvisor mounted).\n";
  y += "# Review before use: `sysvisor policy check`, then\n";
  y += "# `sysvisor policy test " + options.name + ".yaml " + options.name + ".cases.yaml`.\n";
  for (const auto& n : seen.not_learned) y += "# not learned: " + n + "\n";
  // Lines skipped (torn or invalid) and warnings: one line each, never a YAML line break.
  for (const auto& n : notes) {
    std::string one = n;
    std::ranges::replace(one, '\n', ' ');
    std::ranges::replace(one, '\r', ' ');
    y += "# " + one + "\n";
  }
  y += "\nname: " + options.name + "\n\ndescription: " + quote("Learned from " + options.file) +
       "\n\nrules:\n";
  std::string denies;
  // Device nodes: exactly the devices seen, at the paths seen (under /dev: all of /dev).
  if (!seen.devices.empty()) {
    for (const char* type : {"char", "block"}) {
      std::vector<std::string> paths, devices;
      std::string comment;
      for (const auto& [d, where] : seen.devices) {
        if (d.type != type || (d.type == "char" && d.major == 0 && d.minor == 0) || !harmless(d)) continue;
        devices.push_back(d.numbers());
        paths.insert(paths.end(), where.begin(), where.end());
        comment += "  #   " + d.numbers() + " x" + std::to_string(seen.device_count.at(d)) + ": " +
                   examples(where) + "\n";
      }
      if (devices.empty()) continue;
      y += std::string("  # ") + type + " devices seen (device, calls, paths):\n" + comment;
      y += std::string("  - name: learned-") + type + "-devices\n    syscalls: [mknod, mknodat]\n";
      y += std::string("    match:\n      type: ") + type + "\n      devices: " + yaml_list(devices) +
           "\n      path: " + yaml_list(generalise_paths(paths, {"/dev"})) + "\n";
      y += "    action: emulate\n    audit: true\n";
    }
    // Devices tried and refused by the kernel while learning, not known to be harmless: never
    // granted silently.
    for (const auto& [d, where] : seen.devices) {
      if (harmless(d) || (d.type == "char" && d.major == 0 && d.minor == 0)) continue;
      y += "  # WARNING: " + d.type + " device " + d.numbers() + " was tried x" +
           std::to_string(seen.device_count.at(d)) + " (" + examples(where) +
           ")\n  # and the kernel refused it while learning. It is not among the devices that give a\n"
           "  # container nothing of the host's: granting it hands the container the host's device" +
           (d.type == "block" ? "\n  # (a disk: everything on it)" : "") +
           ". Uncomment only if the container must have it.\n";
      y += "  # - name: learned-" + d.type + "-" + std::to_string(d.major) + "-" + std::to_string(d.minor) +
           "\n  #   syscalls: [mknod, mknodat]\n  #   match: {type: " + d.type + ", devices: [\"" +
           d.numbers() + "\"], path: " + yaml_list(generalise_paths({where.begin(), where.end()}, {"/dev"})) +
           "}\n  #   action: emulate\n  #   audit: true\n";
    }
    if (const auto w = seen.devices.find(Device{"char", 0, 0}); w != seen.devices.end()) {
      y += "  # overlay whiteouts (char 0:0) seen x" + std::to_string(seen.device_count.at(w->first)) +
           ": the kernel lets anyone make them\n";
      y += "  - name: learned-whiteouts\n    syscalls: [mknod, mknodat]\n    match: {type: char, devices: "
           "[\"0:0\"]}\n"
           "    action: allow\n";
    }
    denies +=
        "  - name: other-devices\n    syscalls: [mknod, mknodat]\n    action: deny\n    errno: EPERM\n    "
        "audit: true\n";
  }
  if (seen.mounts > 0) {
    // Sources outside /dev are image files: the emulator attaches only those `images` names.
    std::vector<std::string> images;
    for (const auto& src : seen.mount_sources) {
      if (!src.empty() && src.front() == '/' && !under(src, "/dev")) images.push_back(src);
    }
    y += "  # mounts seen x" + std::to_string(seen.mounts) + ": fstype " + examples(seen.fstypes) + "; at " +
         examples(seen.mount_targets) + "; from " + examples(seen.mount_sources) + "\n";
    y += "  - name: learned-mounts\n    syscalls: [mount]\n    match:\n      fstype: " +
         yaml_list(seen.fstypes) + "\n      target: " +
         yaml_list(generalise_paths({seen.mount_targets.begin(), seen.mount_targets.end()})) +
         "\n    action: emulate\n" +
         (images.empty() ? std::string()
                         : "    emulate: {images: " + yaml_list(generalise_paths(images)) + "}\n") +
         "    audit: true\n";
  }
  if (seen.kernel_mounts > 0) {
    // After the emulated types (which the rule above takes first). Allowed by flags (registers), not by
    // fstype: the kernel reads the type again after the decision, so `allow` on what was read from memory is
    // refused by the linter. What the rule lets through is the kernel's to decide with the container's own
    // rights: a type it may not mount in its user namespace (ext4 from a racing thread) is refused by the
    // kernel.
    y += "  # mounts the kernel makes for a user namespace, seen x" + std::to_string(seen.kernel_mounts) +
         ": fstype " + examples(seen.kernel_fstypes) + "; at " + examples(seen.kernel_targets) +
         "\n  # (allowed: the kernel decides with the container's own rights, and refuses the types a\n"
         "  # user namespace may not mount; sysvisor's mount emulation mounts block devices and images\n"
         "  # only, and would break these)\n";
    y += "  - name: learned-kernel-mounts\n    syscalls: [mount]\n    match: {flags: {clear: [MS_BIND, "
         "MS_MOVE, "
         "MS_REMOUNT]}}\n    action: allow\n";
  }
  // umount2 emulated undoes what sysvisor mounted and leaves everything else to the kernel: the
  // same answer as the kernel's wherever sysvisor mounted nothing. Never refused, as learning
  // cannot see the kernel refuse it (every call goes to the kernel).
  if (seen.mounts > 0 || seen.umounts > 0) {
    y += "  # unmounts seen x" + std::to_string(seen.umounts) +
         (seen.umount_targets.empty() ? std::string() : ": " + examples(seen.umount_targets)) +
         "\n  # (emulated: sysvisor unmounts what it mounted, the kernel answers the rest)\n";
    y += "  - name: learned-unmounts\n    syscalls: [umount2]\n    action: emulate\n    audit: true\n";
  }
  {
    bool mount_seen = seen.mounts > 0 || seen.kernel_mounts > 0;
    for (const auto& n : seen.not_learned) mount_seen = mount_seen || n.starts_with("mount");
    if (mount_seen)
      denies +=
          "  - name: other-mounts\n    syscalls: [mount]\n    action: deny\n    errno: EPERM\n    "
          "audit: true\n";
  }
  const auto xattr_rule = [&](const char* what, const std::set<std::string>& names, std::size_t count,
                              const char* syscalls) {
    if (names.empty()) return;
    y += std::string("  # xattrs ") + what + " x" + std::to_string(count) + ": " + examples(names) + "\n";
    y += std::string("  - name: learned-xattrs-") + what + "\n    syscalls: " + syscalls +
         "\n    match:\n      xattr: " + yaml_list(generalise_xattrs({names.begin(), names.end()})) +
         "\n    action: emulate\n    audit: true\n";
  };
  xattr_rule("set", seen.xattr_set_names, seen.xattr_sets, "[setxattr, lsetxattr, fsetxattr]");
  xattr_rule("removed", seen.xattr_remove_names, seen.xattr_removes,
             "[removexattr, lremovexattr, fremovexattr]");
  if (!seen.xattr_set_names.empty() || !seen.xattr_remove_names.empty()) {
    denies +=
        "  - name: other-xattrs\n    syscalls: [setxattr, lsetxattr, fsetxattr, removexattr, lremovexattr, "
        "fremovexattr]\n    action: deny\n    errno: EPERM\n    audit: true\n";
  }
  if (seen.max_priority) {
    y += "  # real-time priority seen x" + std::to_string(seen.sched_calls) + ", at most " +
         std::to_string(*seen.max_priority) + "\n";
    y += "  - name: learned-realtime\n    syscalls: [sched_setscheduler, sched_setattr]\n    match: "
         "{priority: {max: " +
         std::to_string(*seen.max_priority) + "}}\n    action: emulate\n    audit: true\n";
  }
  if (seen.min_nice) {
    y += "  # setpriority seen x" + std::to_string(seen.nice_calls) + ", nice down to " +
         std::to_string(*seen.min_nice) + "\n";
    y += "  - name: learned-nice\n    syscalls: [setpriority]\n    match: {nice: {min: " +
         std::to_string(*seen.min_nice) + "}}\n    action: emulate\n    audit: true\n";
  }
  if (seen.max_priority || seen.min_nice) {
    denies +=
        "  - name: other-scheduling\n    syscalls: [sched_setscheduler, sched_setattr, setpriority]\n"
        "    action: deny\n    errno: EPERM\n    audit: true\n";
  }
  if (!denies.empty()) y += "  # Everything else these calls do: refused.\n" + denies;
  if (y.ends_with("rules:\n")) y.replace(y.size() - 1, 1, " []\n");
  return y;
}

std::string write_cases(const Seen& seen, const LearnOptions& options) {
  std::string c =
      "# Decision cases for " + options.name + ".yaml, written by `sysvisor policy learn`: the calls\n";
  c +=
      "# seen, and calls outside what was learned (refused).\npolicy: " + options.name + "\ncwd: /\ncases:\n";
  for (const auto& line : seen.cases) c += line;
  Seen refused;
  if (!seen.devices.empty()) {
    for (const Device& d : {Device{"block", 8, 0}, Device{"char", 1, 1}, Device{"block", 7, 0}}) {
      if (seen.devices.contains(d)) continue;
      add_case(refused,
               "mknod(\"/dev/sysvisor-unlearned\", " + std::string(d.type == "char" ? "S_IFCHR" : "S_IFBLK") +
                   "|0600, " + d.numbers() + ")",
               "deny EPERM audited");
      break;
    }
  }
  if (seen.kernel_mounts > 0) {
    // New mounts go to the kernel: a bind mount is outside what was learned.
    add_case(refused,
             "mount(\"/\", \"/sysvisor-unlearned\", \"none\", " + std::to_string(kMsBind) + ", NULL)",
             "deny EPERM audited");
  } else if (seen.mounts > 0) {
    add_case(refused, "mount(\"none\", \"/sysvisor-unlearned\", \"sysvisor-unlearned\", 0, NULL)",
             "deny EPERM audited");
  }
  if (!seen.xattr_set_names.empty())
    add_case(refused, "setxattr(\"/\", \"sysvisor.unlearned\", NULL, 1, 0)", "deny EPERM audited");
  if (seen.max_priority)
    add_case(refused,
             "sched_setscheduler(0, 1, {sched_priority=" + std::to_string(*seen.max_priority + 1) + "})",
             "deny EPERM audited");
  if (seen.min_nice && *seen.min_nice > -20)
    add_case(refused, "setpriority(0, 0, " + std::to_string(*seen.min_nice - 1) + ")", "deny EPERM audited");
  if (!refused.cases.empty()) c += "  # outside what was learned\n";
  for (const auto& line : refused.cases) c += line;
  if (c.ends_with("cases:\n")) c.replace(c.size() - 1, 1, " []\n");
  return c;
}

}  // namespace

std::vector<std::string> generalise_paths(const std::vector<std::string>& paths,
                                          const std::vector<std::string>& whole_dirs) {
  std::set<std::string> out;
  std::map<std::string, std::set<std::string>> by_parent;
  for (const auto& p : paths) {
    const auto dir = std::ranges::find_if(whole_dirs, [&](const std::string& d) { return under(p, d); });
    if (dir != whole_dirs.end()) {
      out.insert(*dir + "/*");
    } else {
      by_parent[parent_of(p)].insert(p);
    }
  }
  for (const auto& [parent, entries] : by_parent) {
    // Two entries of one directory say "things in it"; `/*` would say "anything at all".
    if (entries.size() >= 2 && parent != "/") {
      out.insert(parent + "/*");
    } else {
      out.insert(entries.begin(), entries.end());
    }
  }
  return {out.begin(), out.end()};
}

std::vector<std::string> generalise_xattrs(const std::vector<std::string>& names) {
  std::map<std::string, std::set<std::string>> by_prefix;
  std::set<std::string> out;
  for (const auto& n : names) {
    const std::size_t dot = n.rfind('.');
    const std::size_t first = n.find('.');
    if (dot == std::string::npos || dot == first) {
      out.insert(n);  // "user.x": its prefix is a whole namespace, too wide to guess
    } else {
      by_prefix[n.substr(0, dot)].insert(n);
    }
  }
  for (const auto& [prefix, entries] : by_prefix) {
    if (entries.size() >= 2) {
      out.insert(prefix + ".*");
    } else {
      out.insert(entries.begin(), entries.end());
    }
  }
  return {out.begin(), out.end()};
}

std::expected<Learned, std::vector<std::string>> learn(std::string_view records,
                                                       const LearnOptions& options) {
  // A line that is not a whole audit record (cut off by a full disk or a crash, or garbage) is
  // skipped and reported: the valid records around it still count.
  std::vector<std::string> skipped;
  std::vector<std::string> warnings;
  Seen seen;
  std::size_t other_owners = 0;
  std::size_t no_owner = 0;
  google::protobuf::util::JsonParseOptions parse;
  parse.ignore_unknown_fields = true;  // records of a newer sysvisor
  std::size_t line_no = 0;
  std::size_t at = 0;
  while (at < records.size()) {
    const std::size_t eol = std::min(records.find('\n', at), records.size());
    const std::string_view line = records.substr(at, eol - at);
    at = eol + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string where = options.file + ":" + std::to_string(line_no) + ": ";
    const auto skip = [&](const std::string& why) { skipped.push_back(where + "skipped: " + why); };
    if (line.front() != '{') {
      skip("not an audit record (a JSON object per line)");
      continue;
    }
    Record r;
    if (const auto status = google::protobuf::util::JsonStringToMessage(std::string(line), &r, parse);
        !status.ok()) {
      const std::string why(status.message());
      skip("not an audit record (torn or invalid): " + why.substr(0, why.find('\n')));
      continue;
    }
    if (r.event() == "suppressed") {
      // (Its owner_uid has the same JSON key as a call's: parsed as one.)
      const bool owner_ok = !options.owner || (r.has_owner_uid() && r.owner_uid() == *options.owner);
      if (owner_ok && (options.container.empty() || r.container() == options.container))
        warnings.push_back(where +
                           "warning: the rate limit held records back here; raise audit_rate while learning");
      continue;
    }
    if (r.event() != "call") {
      skip("not an audit record: `event` is `" + r.event() + "`, not call or suppressed");
      continue;
    }
    if (r.syscall().empty()) {
      skip("audit record without `syscall`");
      continue;
    }
    if (!options.container.empty() && r.container() != options.container) continue;
    if (r.action() != "learn" && !r.has_would()) continue;  // enforced: not what the workload asked for
    // A container id is its owner's only while the owner's container runs: another user's
    // container may have had the same id, and must not write root's policy.
    if (options.owner && !r.has_owner_uid()) {
      ++no_owner;
      continue;
    }
    if (options.owner && r.owner_uid() != *options.owner) {
      ++other_owners;
      continue;
    }
    take(seen, r);
  }
  for (const auto& [d, where] : seen.devices) {
    if (harmless(d) || (d.type == "char" && d.major == 0 && d.minor == 0)) continue;
    warnings.push_back(options.file + ": warning: " + d.type + " device " + d.numbers() + " (" +
                       examples(where) +
                       ") was refused by the kernel while learning and gives a container the host's "
                       "device: written commented out, not granted");
  }
  std::vector<std::string> notes = std::move(skipped);
  notes.insert(notes.end(), warnings.begin(), warnings.end());
  if (other_owners + no_owner > 0) {
    notes.push_back(options.file + ": note: left out " + std::to_string(other_owners) +
                    " records of containers of other owners than uid " +
                    std::to_string(options.owner.value_or(0)) + " and " + std::to_string(no_owner) +
                    " without an owner (older records); choose with --owner UID, or --owner any for all");
  }
  if (seen.records == 0) {
    notes.push_back(options.file + ": no learn or audit records" +
                    (options.container.empty() ? std::string() : " of container " + options.container) +
                    (options.owner ? " owned by uid " + std::to_string(*options.owner) : std::string()) +
                    " (run the workload with a `mode: learn` policy or `sysvisor-agent run --learn`)");
    return std::unexpected(std::move(notes));
  }
  Learned out;
  out.records = seen.records;
  out.other_owners = other_owners;
  out.no_owner = no_owner;
  out.skipped = std::ranges::count_if(
      notes, [](const std::string& n) { return n.find(": skipped: ") != std::string::npos; });
  out.notes = std::move(notes);
  out.policy = write_policy(seen, options, out.notes);
  out.cases = write_cases(seen, options);
  return out;
}

}  // namespace sysvisor::tools
