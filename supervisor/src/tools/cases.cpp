// Decision cases (NAME.cases.yaml): parsing with positions, and running them against a policy.
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "sysvisor/sched.hpp"
#include "sysvisor/syscalls.hpp"
#include "sysvisor/tools.hpp"

namespace sysvisor::tools {
namespace {

using policy::ErrorCode;
using policy::LoadError;
using policy::Position;

class CaseParser {
 public:
  CaseParser(std::string_view text, std::string file) : text_(text), file_(std::move(file)) {
    std::size_t start = 0;
    while (start <= text_.size()) {
      const std::size_t nl = text_.find('\n', start);
      lines_.push_back(
          text_.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
      if (nl == std::string_view::npos) break;
      start = nl + 1;
    }
  }

  std::expected<CaseFile, std::vector<LoadError>> run() {
    CaseFile out;
    out.file = file_;
    YAML::Node root;
    try {
      root = YAML::Load(std::string(text_));
    } catch (const YAML::Exception& e) {
      error(ErrorCode::YamlParse, e.msg, e.mark);
      policy::explain_tab(errors_.back(), text_);
      return std::unexpected(std::move(errors_));
    }
    if (!root.IsMap()) {
      error(ErrorCode::WrongType,
            "a case file is a mapping with `cases:` (and optional `policy:`, `cwd:`, `fds:`)",
            root.IsDefined() && !root.IsNull() ? root.Mark() : YAML::Mark());
      return std::unexpected(std::move(errors_));
    }
    check_keys(root, {"policy", "cwd", "fds", "cases"});
    if (const auto p = root["policy"]) {
      if (auto s = scalar(p, "policy")) {
        out.policy = *s;
        out.policy_pos = pos(p.Mark());
      }
    }
    CallContext defaults;
    if (const auto c = root["cwd"]) read_cwd(c, defaults);
    if (const auto f = root["fds"]) read_fds(f, defaults);
    const auto cases = root["cases"];
    if (!cases) {
      error(ErrorCode::MissingKey, "missing `cases:` (a list of 'CALL -> OUTCOME' strings)", root.Mark());
    } else if (!cases.IsSequence()) {
      error(ErrorCode::WrongType, "`cases` must be a list", cases.Mark());
    } else {
      for (const auto& item : cases) {
        if (auto c = one_case(item, defaults)) out.cases.push_back(std::move(*c));
      }
    }
    if (!errors_.empty()) return std::unexpected(std::move(errors_));
    return out;
  }

 private:
  Position pos(const YAML::Mark& m) const {
    if (m.line < 0) return Position{file_, 0, 0};
    return Position{file_, m.line + 1, m.column + 1};
  }
  void error(ErrorCode code, std::string message, const YAML::Mark& m) {
    errors_.push_back(LoadError{code, std::move(message), pos(m)});
  }

  // Where the text of a scalar starts (after an opening quote).
  Position text_pos(const YAML::Node& node) const {
    Position p = pos(node.Mark());
    const auto line = static_cast<std::size_t>(node.Mark().line);
    const auto col = static_cast<std::size_t>(node.Mark().column);
    if (node.Mark().line >= 0 && line < lines_.size() && col < lines_[line].size() &&
        (lines_[line][col] == '\'' || lines_[line][col] == '"')) {
      ++p.column;
    }
    return p;
  }

  void check_keys(const YAML::Node& map, std::initializer_list<std::string_view> allowed) {
    std::set<std::string> seen;
    for (const auto& kv : map) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
      bool known = false;
      std::string list;
      for (auto a : allowed) {
        known = known || a == key;
        list += (list.empty() ? "" : ", ") + std::string(a);
      }
      if (!known) {
        const std::vector<std::string_view> names(allowed);
        error(ErrorCode::UnknownKey,
              "unknown key `" + key + "`" + policy::did_you_mean(key, names) + " (allowed: " + list + ")",
              kv.first.Mark());
      } else if (!seen.insert(key).second) {
        error(ErrorCode::DuplicateKey, "`" + key + "` given twice", kv.first.Mark());
      }
    }
  }

  std::optional<std::string> scalar(const YAML::Node& node, std::string_view what) {
    if (!node.IsScalar()) {
      error(ErrorCode::WrongType, "`" + std::string(what) + "` must be a string", node.Mark());
      return std::nullopt;
    }
    return node.Scalar();
  }

  void read_cwd(const YAML::Node& node, CallContext& ctx) {
    auto s = scalar(node, "cwd");
    if (!s) return;
    if (s->empty() || s->front() != '/') {
      error(ErrorCode::BadValue, "`cwd` must be an absolute path", node.Mark());
      return;
    }
    ctx.cwd = normalize_path("/", *s);
  }

  void read_fds(const YAML::Node& node, CallContext& ctx) {
    if (!node.IsMap()) {
      error(ErrorCode::WrongType, "`fds` maps fd numbers to absolute paths, like {3: /etc}", node.Mark());
      return;
    }
    for (const auto& kv : node) {
      int fd = -1;
      try {
        fd = kv.first.as<int>();
      } catch (const YAML::Exception&) {
        fd = -1;
      }
      if (fd < 0) {
        error(ErrorCode::BadValue, "an fd is a number 0 or more", kv.first.Mark());
        continue;
      }
      auto dir = scalar(kv.second, "fds");
      if (!dir) continue;
      if (dir->empty() || dir->front() != '/') {
        error(ErrorCode::BadValue, "the path of fd " + std::to_string(fd) + " must be absolute",
              kv.second.Mark());
        continue;
      }
      ctx.fds[fd] = normalize_path("/", *dir);
    }
  }

  // "CALL -> OUTCOME": the last `->` outside double quotes.
  static std::optional<std::size_t> arrow(std::string_view s) {
    std::optional<std::size_t> found;
    bool quoted = false;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\\' && quoted) {
        ++i;
      } else if (s[i] == '"') {
        quoted = !quoted;
      } else if (!quoted && s[i] == '-' && i + 1 < s.size() && s[i + 1] == '>') {
        found = i;
      }
    }
    return found;
  }

  std::optional<Case> one_case(const YAML::Node& item, const CallContext& defaults) {
    Case c;
    c.pos = pos(item.Mark());
    CallContext ctx = defaults;
    Position call_pos;
    Position expect_pos;
    if (item.IsScalar()) {
      const std::string& s = item.Scalar();
      const auto at = arrow(s);
      if (!at) {
        error(ErrorCode::BadValue,
              "a case is 'CALL -> OUTCOME', e.g. 'mknod(\"/dev/null\", S_IFCHR|0666, 1:3) -> emulate'",
              item.Mark());
        return std::nullopt;
      }
      c.call_text = s.substr(0, *at);
      c.expect_text = s.substr(*at + 2);
      call_pos = text_pos(item);
      expect_pos = call_pos;
      expect_pos.column += static_cast<int>(*at) + 2;
    } else if (item.IsMap()) {
      const std::size_t before = errors_.size();
      check_keys(item, {"call", "expect", "cwd", "fds"});
      const auto call = item["call"];
      const auto expect = item["expect"];
      if (!call) error(ErrorCode::MissingKey, "a case needs `call:`", item.Mark());
      if (!expect) error(ErrorCode::MissingKey, "a case needs `expect:`", item.Mark());
      if (const auto cwd = item["cwd"]) read_cwd(cwd, ctx);
      if (const auto fds = item["fds"]) read_fds(fds, ctx);
      if (errors_.size() != before) return std::nullopt;
      auto call_text = scalar(call, "call");
      auto expect_text = scalar(expect, "expect");
      if (!call_text || !expect_text) return std::nullopt;
      c.call_text = *call_text;
      c.expect_text = *expect_text;
      call_pos = text_pos(call);
      expect_pos = text_pos(expect);
    } else {
      error(ErrorCode::WrongType,
            "a case is a string 'CALL -> OUTCOME' or a mapping with `call:` and `expect:`", item.Mark());
      return std::nullopt;
    }
    // Trimmed; the position follows the text's first character.
    auto trim = [](std::string& s, Position& p) {
      const auto b = s.find_first_not_of(" \t");
      const auto e = s.find_last_not_of(" \t");
      p.column += static_cast<int>(b == std::string::npos ? 0 : b);
      s = b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    };
    trim(c.call_text, call_pos);
    trim(c.expect_text, expect_pos);
    bool ok = true;
    auto literal_error = [&](const LiteralError& e, Position p, std::string_view what) {
      if (e.column > 0) p.column += e.column - 1;
      errors_.push_back(LoadError{ErrorCode::BadValue, std::string(what) + ": " + e.message, std::move(p)});
      ok = false;
    };
    auto literal = parse_call(c.call_text);
    if (!literal) {
      literal_error(literal.error(), call_pos, "call");
    } else {
      auto call = call_from_literal(*literal, ctx);
      if (!call) {
        literal_error(call.error(), call_pos, "call");
      } else {
        c.call = std::move(*call);
      }
    }
    auto expect = parse_expectation(c.expect_text);
    if (!expect) {
      literal_error(expect.error(), expect_pos, "outcome");
    } else {
      c.expect = *expect;
    }
    if (!ok) return std::nullopt;
    return c;
  }

  std::string_view text_;
  std::string file_;
  std::vector<std::string_view> lines_;
  std::vector<LoadError> errors_;
};

std::string call_text_of(const Case& c) {
  return c.call_text;
}

}  // namespace

std::expected<CaseFile, std::vector<LoadError>> parse_cases(std::string_view text, const std::string& file) {
  return CaseParser(text, file).run();
}

std::expected<CaseFile, std::vector<LoadError>> load_cases(const std::string& file) {
  // As bounded as a policy: a case file is read whole, then by yaml-cpp.
  auto text = policy::read_input(file);
  if (!text) return std::unexpected(std::vector<LoadError>{std::move(text.error())});
  return parse_cases(*text, file);
}

Outcome evaluate(const policy::Policy& policy, const std::vector<sock_filter>* program,
                 const policy::Call& call) {
  Outcome out;
  if (program != nullptr) {
    const std::uint32_t ret = run_bpf(*program, AUDIT_ARCH_X86_64, call.nr, call.args);
    const std::uint32_t action = ret & SECCOMP_RET_ACTION_FULL;
    if (action == SECCOMP_RET_USER_NOTIF) {
      out.trapped = true;
    } else if (action == SECCOMP_RET_ALLOW) {
      out.filter_verdict = "not trapped";
    } else if (action == SECCOMP_RET_ERRNO) {
      out.decision.action = policy::Action::Deny;
      out.decision.err = static_cast<int>(ret & SECCOMP_RET_DATA);
      out.filter_verdict = std::string("the filter itself: ") + policy::errno_name(out.decision.err);
    } else if (action == SECCOMP_RET_KILL_PROCESS || action == SECCOMP_RET_KILL_THREAD) {
      out.decision.action = policy::Action::Kill;
      out.filter_verdict = "the filter itself: kill";
    } else {
      out.filter_verdict = "the filter itself: seccomp action " + std::to_string(action >> 16);
    }
  } else {
    for (const auto& trap : trap_set(policy)) {
      if (trap.nr != call.nr) continue;
      for (const auto& conj : trap.when) out.trapped = out.trapped || holds(conj, call.args);
    }
    if (!out.trapped) out.filter_verdict = "not trapped";
  }
  if (out.trapped) out.decision = policy::decide(policy, call);
  const auto& d = out.decision;
  if (out.trapped && d.action == policy::Action::Emulate && d.rule_index >= 0 &&
      static_cast<std::size_t>(d.rule_index) < policy.rules.size()) {
    // The daemon's emulator answers some calls before it acts: so does the test.
    const policy::SyscallInfo* info = policy::syscall_info(call.nr);
    if (info != nullptr && info->family == policy::Family::Sched && info->emulator) {
      const auto early =
          emul::sched::check_call(info->name, call, policy.rules[static_cast<std::size_t>(d.rule_index)]);
      out.emulator_err = early.err;
      out.emulator_why = early.why;
    }
  }
  return out;
}

std::string describe(const policy::Policy& policy, const Outcome& o) {
  std::string out = policy::to_string(o.decision.action);
  if (o.emulator_err != 0) out = std::string("deny ") + policy::errno_name(o.emulator_err);
  if (o.decision.action == policy::Action::Deny) out += std::string(" ") + policy::errno_name(o.decision.err);
  if (o.decision.action == policy::Action::Return) out += " " + std::to_string(o.decision.value);
  out += o.decision.audit ? " audited" : " unaudited";
  if (!o.trapped) return out + " (" + o.filter_verdict + ")";
  if (o.decision.would)
    out += " would " + to_string(Verdict{*o.decision.would, o.decision.err, o.decision.value});
  if (o.decision.rule_index < 0 || static_cast<std::size_t>(o.decision.rule_index) >= policy.rules.size()) {
    return out + " (trapped; no rule matched: the kernel decides)";
  }
  const auto& rule = policy.rules[static_cast<std::size_t>(o.decision.rule_index)];
  out += " (rule `" + rule.name + "`";
  if (rule.origin != policy.name) out += " of " + rule.origin;
  if (o.emulator_err != 0) {
    out += std::string(": emulate, answered ") + policy::errno_name(o.emulator_err) + " by the emulator";
    if (!o.emulator_why.empty()) out += " (" + o.emulator_why + ")";
  }
  return out + ")";
}

std::vector<CaseFailure> run_cases(const policy::Policy& policy, const std::vector<sock_filter>* program,
                                   const CaseFile& cases) {
  std::vector<CaseFailure> failures;
  for (const auto& c : cases.cases) {
    const Outcome got = evaluate(policy, program, c.call);
    const auto& d = got.decision;
    // What the caller gets: the decision, or the emulator's early errno.
    const policy::Action action = got.emulator_err != 0 ? policy::Action::Deny : d.action;
    const int err = got.emulator_err != 0 ? got.emulator_err : d.err;
    bool pass = action == c.expect.action;
    if (pass && action == policy::Action::Deny) pass = err == c.expect.err;
    if (pass && d.action == policy::Action::Return) pass = d.value == c.expect.value;
    if (pass && c.expect.audit) pass = d.audit == *c.expect.audit;
    if (pass && c.expect.would) {
      // What the rules decided: recorded as `would` in audit and learn modes, the action itself
      // in enforce mode. A call the filter answers never reaches the rules.
      const Verdict& w = *c.expect.would;
      const policy::Action rules = d.would.value_or(d.action);
      pass = got.trapped && rules == w.action && (rules != policy::Action::Deny || d.err == w.err) &&
             (rules != policy::Action::Return || d.value == w.value);
    }
    if (pass && c.expect.rule) {
      const bool matched = d.rule_index >= 0 && static_cast<std::size_t>(d.rule_index) < policy.rules.size();
      pass = got.trapped &&
             (matched ? policy.rules[static_cast<std::size_t>(d.rule_index)].name == *c.expect.rule
                      : *c.expect.rule == "none");
    }
    if (pass) continue;
    failures.push_back(CaseFailure{&c, got,
                                   c.pos.file + ":" + std::to_string(c.pos.line) + ": " + call_text_of(c) +
                                       ": expected " + to_string(c.expect) + ", got " +
                                       describe(policy, got)});
  }
  return failures;
}

}  // namespace sysvisor::tools
