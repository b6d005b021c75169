// The README's "Rootless podman" walk-through, run as written: the grant, the profile command and
// the podman command with its output are read from the README (the blocks between the
// `podman-walkthrough` markers), so the text and the test cannot drift apart. An unprivileged
// user (kRootlessUser, standing for the README's `alice`) runs podman with runc, as
// OciPodman.RootlessWithRunc does; the daemon gets the README's sysvisor.yaml with --config.
//
// What the test adds to the operator's commands, for its own isolation only: the daemon's
// runtime dir, policies and audit file on the command line (they win over the file), the
// profile's --policies and --listener pointing there, podman's store of its own (podman_argv) and
// `--cidfile`.
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kReadmeUser = "alice";
constexpr const char* kImage = "localhost/sysvisor-busybox:walkthrough";
constexpr const char* kBaseProfile = "/usr/share/containers/seccomp.json";

// The fenced block between `<!-- podman-walkthrough: NAME -->` and the next
// `<!-- podman-walkthrough: end -->` of README.md, without its fences.
std::string readme_block(const std::string& name) {
  const std::string text = read_file(source_dir() / "README.md");
  const std::string begin = "<!-- podman-walkthrough: " + name + " -->\n";
  const std::string end = "<!-- podman-walkthrough: end -->";
  const auto at = text.find(begin);
  const auto stop = at == std::string::npos ? std::string::npos : text.find(end, at);
  if (stop == std::string::npos) {
    ADD_FAILURE() << "README.md has no block `" << begin << "` ... `" << end << "`";
    return {};
  }
  std::string body;
  std::istringstream in(text.substr(at + begin.size(), stop - at - begin.size()));
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("```")) body += line + "\n";
  }
  return body;
}

std::vector<std::string> words(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

// The README's commands block: the profile command, the podman command, the output shown.
struct Commands {
  std::vector<std::string> oci_profile;  // after `sysvisor`
  std::string profile_path;              // where the README writes the profile
  std::vector<std::string> podman_run;   // after `podman`, up to the image
  std::string script;                    // sh -c '...'
  std::vector<std::string> output;       // the `#   ` lines after the podman command
};

std::optional<Commands> readme_commands() {
  Commands c;
  bool after_run = false;
  // A line ending in a backslash goes on in the next one, as in sh.
  std::vector<std::string> joined_lines;
  bool continued = false;
  for (auto line : lines(readme_block("commands"))) {
    const bool more = line.ends_with(" \\");
    if (more) line.resize(line.size() - 2);
    if (continued) {
      joined_lines.back() += " " + line.substr(line.find_first_not_of(' '));
    } else {
      joined_lines.push_back(line);
    }
    continued = more;
  }
  for (const auto& line : joined_lines) {
    if (line.starts_with("sysvisor policy oci-profile ")) {
      const auto redirect = line.find(" > ");
      if (redirect == std::string::npos) return std::nullopt;
      c.oci_profile = words(line.substr(0, redirect));
      c.oci_profile.erase(c.oci_profile.begin());
      c.profile_path = line.substr(redirect + 3);
    } else if (line.starts_with("podman run ")) {
      const auto sh = line.find(" sh -c '");
      if (sh == std::string::npos || !line.ends_with("'")) return std::nullopt;
      c.podman_run = words(line.substr(0, sh));
      c.podman_run.erase(c.podman_run.begin());
      c.script = line.substr(sh + 8, line.size() - sh - 9);
      after_run = true;
    } else if (after_run && line.starts_with("#")) {
      c.output.push_back(line.substr(line.find_first_not_of("# ")));
    }
  }
  if (c.oci_profile.empty() || c.profile_path.empty() || c.podman_run.empty() || c.output.empty())
    return std::nullopt;
  return c;
}

// The README's sysvisor.yaml without the user's entry (`  - users: [alice]` and its lines).
std::string without_users_entry(const std::string& config) {
  std::string out;
  bool in_entry = false;
  for (const auto& line : lines(config)) {
    if (line.starts_with("  - "))
      in_entry = line.find(std::string("[") + kReadmeUser + "]") != std::string::npos;
    if (!in_entry) out += line + "\n";
  }
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += s + "\n";
  return out;
}

class PodmanWalkthrough : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) {
      missing_ = "the walk-through needs root (the test becomes the user itself)";
    } else if (which("newuidmap").empty() || !fs::exists("/usr/sbin/runuser")) {
      missing_ = "rootless podman needs newuidmap (uidmap) and runuser";
    } else if (which("podman").empty() || which("runc").empty()) {
      missing_ = "podman and runc are not installed (scripts/install-deps)";
    }
    if (!missing_.empty()) return;
    ensure_rootless_user();
    const passwd* pw = ::getpwnam(kRootlessUser);
    ASSERT_NE(pw, nullptr);
    uid_ = pw->pw_uid;
    dir_ = new TempDir("sysvisor-walk");
    pm_ = new Podman{dir_->path() / "store", kRootlessUser};
    reaper_ = new PauseReaper(pm_->store);
    podman_import(*pm_, uid_, kImage);
  }
  static void TearDownTestSuite() {
    delete reaper_;
    delete pm_;
    delete dir_;
    reaper_ = nullptr;
    pm_ = nullptr;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (!missing_.empty()) {
      std::fprintf(stderr, "\n*** SKIPPED: %s ***\n\n", missing_.c_str());
      GTEST_SKIP() << missing_;
    }
    ASSERT_NE(dir_, nullptr) << "the suite's set-up failed (the test user or podman's image import)";
    const auto c = readme_commands();
    ASSERT_TRUE(c)
        << "README.md's podman-walkthrough commands block is not `sysvisor policy oci-profile ... > "
           "FILE`, `podman run ... sh -c '...'` and the output as `#   ` lines:\n"
        << readme_block("commands");
    commands_ = *c;
    const std::string config = readme_block("sysvisor.yaml");
    ASSERT_EQ(config.find(kReadmeUser), config.rfind(kReadmeUser)) << "one `alice` in the README's grant";
    ASSERT_NE(config.find(std::string("users: [") + kReadmeUser + "]"), std::string::npos) << config;
    granted_ = replaced(config, kReadmeUser, kRootlessUser);
    ungranted_ = without_users_entry(config);
    ASSERT_NE(ungranted_.find("users: [root]"), std::string::npos) << "root's entry is kept:\n" << config;
    ASSERT_NE(ungranted_, config);

    // The profile, made by the README's command with the built sysvisor.
    std::vector<std::string> argv{(bin_dir() / "sysvisor").string()};
    argv.insert(argv.end(), commands_.oci_profile.begin(), commands_.oci_profile.end());
    argv.insert(argv.end(), {"--policies", shipped_policies().string(), "--listener", oci_sock().string()});
    const auto made = run(argv);
    ASSERT_EQ(made.status, 0) << made.err;
    profile_ = made.out;
    std::ofstream(profile_file()) << profile_;
    ::chmod(profile_file().c_str(), 0644);
  }

  void TearDown() override {
    if (daemon_) {
      EXPECT_EQ(daemon_->stop(SIGTERM), 0) << "clean shutdown on SIGTERM";
      daemon_.reset();
    }
  }

  static fs::path runtime() { return dir_->path() / "run"; }
  static fs::path oci_sock() { return runtime() / "oci.sock"; }
  static fs::path config_file() { return dir_->path() / "sysvisor.yaml"; }
  static fs::path profile_file() { return dir_->path() / "sysvisor-rootless-devices.json"; }
  fs::path audit_log() const { return dir_->path() / (test_name() + ".audit.jsonl"); }
  fs::path daemon_log() const { return dir_->path() / (test_name() + ".log"); }
  static std::string test_name() { return ::testing::UnitTest::GetInstance()->current_test_info()->name(); }

  void start_daemon(const std::string& config) {
    std::ofstream(config_file()) << config;
    ::chmod(config_file().c_str(), 0644);
    daemon_ = std::make_unique<Daemon>(runtime(), shipped_policies(), audit_log(), daemon_log(),
                                       std::vector<std::string>{"--config", config_file().string()});
    ASSERT_TRUE(daemon_->ready()) << read_file(daemon_log());
    ASSERT_TRUE(fs::exists(oci_sock())) << read_file(daemon_log());
  }

  // The README's podman command as the user, `script` for its sh -c (the README's by default).
  struct Ran {
    Outcome o;
    std::string id;  // podman's long id
  };
  Ran podman_run(const std::string& script = {}) const {
    const fs::path cid = pm_->store / "cid";
    fs::remove(cid);
    std::vector<std::string> args{commands_.podman_run.front(), "--cidfile", cid.string()};
    std::size_t replaced_words = 0;
    for (auto it = commands_.podman_run.begin() + 1; it != commands_.podman_run.end(); ++it) {
      if (*it == "IMAGE") {
        args.emplace_back(kImage);
        ++replaced_words;
      } else if (*it == "seccomp=" + commands_.profile_path) {
        args.push_back("seccomp=" + profile_file().string());
        ++replaced_words;
      } else {
        args.push_back(*it);
      }
    }
    EXPECT_EQ(replaced_words, 2U) << "the README's podman command names IMAGE and the profile it wrote ("
                                  << commands_.profile_path << ")";
    args.insert(args.end(), {"sh", "-c", script.empty() ? commands_.script : script});
    Ran r{run(podman_argv(*pm_, args), 90s), {}};
    EXPECT_FALSE(r.o.timed_out) << "podman run timed out:\n" << r.o.err;
    const auto id = lines(read_file(cid));
    r.id = id.empty() ? "" : id.front();
    EXPECT_EQ(r.id.size(), 64U) << "no container id in " << cid << "; podman said:\n" << r.o.err;
    return r;
  }

  // What the README shows as the command's output: its stdout lines, then its stderr lines
  // (busybox's errors; podman adds nothing of its own when all goes well).
  static std::vector<std::string> output_of(const Outcome& o) {
    auto out = lines(o.out);
    for (const auto& l : lines(o.err)) out.push_back(l);
    return out;
  }

  std::vector<std::string> audit_of(const std::string& id) const { return audit_lines(audit_log(), id); }

  static inline std::string missing_;
  static inline uid_t uid_ = 0;
  static inline TempDir* dir_ = nullptr;
  static inline Podman* pm_ = nullptr;
  static inline PauseReaper* reaper_ = nullptr;
  Commands commands_;
  std::string granted_;
  std::string ungranted_;
  std::string profile_;
  std::unique_ptr<Daemon> daemon_;
};

// The merged profile keeps podman's default: every rule of the base for every call the policy
// does not trap, as it was; mknod and mknodat notify for char and block devices, and the base's
// rule for them comes back for the other file types. The defaults and architectures unchanged.
TEST_F(PodmanWalkthrough, TheProfileKeepsEveryRuleOfPodmansDefault) {
  std::ifstream in(kBaseProfile);
  ASSERT_TRUE(in) << kBaseProfile << " is missing: podman's containers-common provides it";
  const json base = json::parse(in);
  const json merged = json::parse(profile_);
  for (const char* key : {"defaultAction", "defaultErrnoRet", "archMap"})
    EXPECT_EQ(merged.value(key, json()), base.value(key, json())) << key;
  EXPECT_EQ(merged["listenerPath"], oci_sock().string());
  EXPECT_EQ(merged["listenerMetadata"], "policy=rootless-devices");

  // The same rule but for the names it lists: action, errno, args, includes, excludes, comment.
  const auto same_rule = [](json a, json b) {
    a.erase("names");
    b.erase("names");
    return a == b;
  };
  const auto names_of = [](const json& rule) {
    std::vector<std::string> out;
    if (rule.contains("name")) out.push_back(rule["name"]);
    for (const auto& n : rule.value("names", json::array())) out.push_back(n);
    return out;
  };
  std::size_t kept = 0;
  for (const auto& rule : base["syscalls"]) {
    for (const auto& name : names_of(rule)) {
      if (name == "mknod" || name == "mknodat") continue;
      bool found = false;
      for (const auto& m : merged["syscalls"]) {
        const auto n = names_of(m);
        found = found || (std::ranges::find(n, name) != n.end() && same_rule(rule, m));
      }
      EXPECT_TRUE(found) << "the base's rule for " << name << " is gone:\n" << rule.dump();
      kept += found ? 1 : 0;
    }
  }
  EXPECT_GT(kept, 300U) << "podman's default names hundreds of calls";

  // mknod, mknodat: NOTIFY for S_IFCHR and S_IFBLK, and the base's ALLOW for the 14 other types.
  for (const auto& [name, index] : {std::pair{"mknod", 1}, std::pair{"mknodat", 2}}) {
    std::vector<std::uint64_t> notified;
    std::vector<std::uint64_t> allowed;
    for (const auto& m : merged["syscalls"]) {
      if (names_of(m) != std::vector<std::string>{name}) continue;
      ASSERT_EQ(m["args"].size(), 1U) << m.dump();
      EXPECT_EQ(m["args"][0]["index"], index) << m.dump();
      EXPECT_EQ(m["args"][0]["op"], "SCMP_CMP_MASKED_EQ") << m.dump();
      EXPECT_EQ(m["args"][0]["value"], 0170000) << m.dump();
      (m["action"] == "SCMP_ACT_NOTIFY" ? notified : allowed).push_back(m["args"][0]["valueTwo"]);
      if (m["action"] != "SCMP_ACT_NOTIFY") {
        EXPECT_EQ(m["action"], "SCMP_ACT_ALLOW") << m.dump();
      }
    }
    EXPECT_EQ(notified, (std::vector<std::uint64_t>{S_IFCHR, S_IFBLK})) << name;
    EXPECT_EQ(allowed.size(), 14U) << name;
    for (const std::uint64_t type : std::initializer_list<std::uint64_t>{S_IFIFO, S_IFREG, S_IFSOCK, 0}) {
      EXPECT_NE(std::ranges::find(allowed, type), allowed.end()) << name << " type " << type;
    }
  }
}

// The walk-through with the grant: the README's command prints the README's output; the node is
// a working char device 1:3 (written to, stat'ed), /dev/sda refused with EPERM, and the audit
// names podman's container and the user's uid. The base's rules hold in the same container:
// kcmp (refused by podman's default without CAP_SYS_PTRACE) is EPERM, a fifo (mknod the policy
// does not trap) is the base's, and /dev/null is podman's bind mount of the host's.
TEST_F(PodmanWalkthrough, WithTheGrantTheUsersContainerMakesDevicesAsTheReadmeShows) {
  start_daemon(granted_);
  const auto r = podman_run();
  EXPECT_EQ(output_of(r.o), commands_.output) << "podman said:\n" << r.o.err;
  EXPECT_EQ(r.o.status, 1) << "sh's status is the refused mknod's";
  ASSERT_TRUE(wait_for([&] { return audit_of(r.id).size() >= 2; }, 5s)) << read_file(audit_log());
  const auto audit = audit_of(r.id);
  const std::string uid = "\"host_uid\":" + std::to_string(uid_) + ",";
  std::size_t made = 0;
  std::size_t refused = 0;
  for (const auto& l : audit) {
    EXPECT_NE(l.find("\"engine\":\"podman/runc\""), std::string::npos) << l;
    EXPECT_NE(l.find(uid), std::string::npos) << "the caller is the user's own uid: " << l;
    EXPECT_NE(l.find("\"container_uid\":0,"), std::string::npos) << l;
    EXPECT_NE(l.find("\"owner_uid\":" + std::to_string(uid_)), std::string::npos) << l;
    if (l.find("\"path\":\"/dev/null2\"") != std::string::npos &&
        l.find("\"device\":\"1:3\"") != std::string::npos &&
        l.find("\"action\":\"emulate\"") != std::string::npos &&
        l.find("\"result\":\"ok\"") != std::string::npos)
      ++made;
    if (l.find("\"path\":\"/dev/sda\"") != std::string::npos &&
        l.find("\"action\":\"deny\"") != std::string::npos &&
        l.find("\"result\":\"EPERM\"") != std::string::npos)
      ++refused;
  }
  EXPECT_EQ(made, 1U) << joined(audit);
  EXPECT_EQ(refused, 1U) << joined(audit);
  const std::string log = read_file(daemon_log());
  const auto at = log.find("[c=" + r.id + "] supervised with policy `rootless-devices`");
  ASSERT_NE(at, std::string::npos) << log;
  EXPECT_NE(log.substr(at, log.find('\n', at) - at).find("uid " + std::to_string(uid_)), std::string::npos)
      << log.substr(at, log.find('\n', at) - at);

  // kcmp of the shell with itself: the kernel allows it (here, on the host), podman's default refuses.
  ASSERT_EQ(::syscall(SYS_kcmp, ::getpid(), ::getpid(), 1 /* KCMP_VM */, 0, 0), 0)
      << "this kernel has no kcmp (" << std::strerror(errno) << "): pick another call the base refuses";
  const auto base = podman_run(
      "probe call " + std::to_string(SYS_kcmp) +
      " $$ $$ 1 0 0; mkfifo /tmp/fifo && stat -c %F /tmp/fifo; "
      "grep -cE ' /dev/(null|zero|full|random|urandom|tty) ' /proc/self/mountinfo; stat -c '%F %t:%T' "
      "/dev/null");
  EXPECT_EQ(lines(base.o.out), (std::vector<std::string>{"EPERM", "fifo", "6", "character special file 1:3"}))
      << base.o.err;
  EXPECT_TRUE(audit_of(base.id).empty()) << "nothing of that is trapped:\n" << joined(audit_of(base.id));
}

// Without the user's entry (root's alone): podman still runs the container, the daemon refuses
// the listener and says why, the trapped mknods fail with ENOSYS (the listener is closed) and
// everything else works. Then the operator's reload (SIGHUP) with the grant: the next container
// runs as the README shows.
TEST_F(PodmanWalkthrough, WithoutTheGrantTrappedCallsFailWithEnosysUntilTheReload) {
  start_daemon(ungranted_);
  const auto r = podman_run();
  EXPECT_EQ(output_of(r.o), (std::vector<std::string>{"mknod: /dev/null2: Function not implemented",
                                                      "mknod: /dev/sda: Function not implemented"}))
      << r.o.err;
  EXPECT_TRUE(wait_for(
      [&] {
        return read_file(daemon_log())
                   .find("refused container `" + r.id + "`: uid " + std::to_string(uid_) +
                         " is not granted any policy by " + config_file().string() +
                         "; the listener is closed, so the calls the runtime's filter traps in this process "
                         "now fail with ENOSYS") != std::string::npos;
      },
      5s))
      << read_file(daemon_log());
  // What the README says of this case is what happened (its text with every line break and run
  // of spaces as one space, so that a reflow is no change).
  std::string readme;
  for (const auto& word : words(read_file(source_dir() / "README.md"))) readme += word + " ";
  for (const auto& said :
       {"`mknod: /dev/null2: Function not implemented`", "`mknod: /dev/sda: Function not implemented`",
        "is not granted any policy by /etc/sysvisor/sysvisor.yaml; the listener is closed"})
    EXPECT_NE(readme.find(said), std::string::npos) << "README.md no longer says " << said;
  const auto probe =
      podman_run("probe mknod /dev/null2 c 1 3; probe mknod /dev/sda b 8 0; probe mknod /tmp/fifo p 0 0");
  EXPECT_EQ(lines(probe.o.out), (std::vector<std::string>{"ENOSYS", "ENOSYS", "ok"})) << probe.o.err;
  EXPECT_TRUE(audit_of(r.id).empty() && audit_of(probe.id).empty()) << read_file(audit_log());

  // The grant, and the reload.
  std::ofstream(config_file()) << granted_;
  const auto offset = read_file(daemon_log()).size();
  ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
  ASSERT_TRUE(wait_for([&] {
    return read_file(daemon_log()).find("reload: in force", offset) != std::string::npos;
  })) << read_file(daemon_log());
  const auto after = podman_run();
  EXPECT_EQ(output_of(after.o), commands_.output) << after.o.err;
  EXPECT_TRUE(wait_for([&] { return audit_of(after.id).size() == 2; }, 5s)) << read_file(audit_log());
}

}  // namespace
}  // namespace sysvisor::it
