// `sysvisor policy explain`: what a policy traps, its rules, and its decision table.
#include <seccomp.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "sysvisor/syscalls.hpp"
#include "sysvisor/tools.hpp"

namespace sysvisor::tools {
namespace {

using nlohmann::json;
using policy::Action;
using policy::Rule;

std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : sep) + i;
  return out;
}

std::string range(const policy::IntRange& r) {
  return (r.min ? std::to_string(*r.min) : std::string()) + ".." +
         (r.max ? std::to_string(*r.max) : std::string());
}

// The typed matchers of a rule, one "key: value" string each.
std::vector<std::string> matchers(const policy::Match& m) {
  std::vector<std::string> out;
  if (m.type) out.push_back(std::string("type ") + policy::to_string(*m.type));
  if (!m.devices.empty()) {
    std::vector<std::string> devs;
    for (const auto& d : m.devices) {
      devs.push_back((d.major ? std::to_string(*d.major) : "*") + ":" +
                     (d.minor ? std::to_string(*d.minor) : "*"));
    }
    out.push_back("device in [" + join(devs) + "]");
  }
  auto list = [&out](const char* what, const std::vector<std::string>& v) {
    if (!v.empty()) out.push_back(std::string(what) + " in [" + join(v) + "]");
  };
  list("path", m.paths);
  list("fstype", m.fstypes);
  list("source", m.sources);
  list("target", m.targets);
  if (m.flags) {
    std::string f = "flags";
    if (m.flags->set != 0) f += " set " + hex(m.flags->set);
    if (m.flags->clear != 0) f += " clear " + hex(m.flags->clear);
    out.push_back(f);
  }
  list("xattr name", m.xattr_names);
  if (m.value_size) out.push_back("value size " + range(*m.value_size));
  if (!m.sched_policies.empty()) {
    std::vector<std::string> p;
    for (int v : m.sched_policies) p.push_back(policy::sched_policy_name(v));
    out.push_back("sched policy in [" + join(p) + "]");
  }
  if (m.priority) out.push_back("priority " + range(*m.priority));
  if (m.nice) out.push_back("nice " + range(*m.nice));
  return out;
}

std::string outcome(const Rule& r) {
  std::string out = policy::to_string(r.action);
  if (r.action == Action::Deny) out += std::string(" ") + policy::errno_name(r.err);
  if (r.action == Action::Return) out += " " + std::to_string(r.value);
  if (r.audit) out += ", audited";
  return out;
}

std::string conditions(const Rule& r, int nr) {
  std::vector<std::string> parts;
  const policy::SyscallInfo* info = policy::syscall_info(nr);
  if (info != nullptr && info->family == policy::Family::Mknod && !r.match.type) {
    parts.emplace_back("type char or block");  // only device nodes are trapped
  }
  for (const auto& a : r.args) parts.push_back(describe(a));
  for (auto& m : matchers(r.match)) parts.push_back(std::move(m));
  return parts.empty() ? "always" : join(parts, " && ");
}

json condition_json(const policy::ArgCondition& c) {
  json j{{"arg", c.index}, {"op", policy::to_string(c.op)}, {"value", c.value}};
  if (c.op == policy::CmpOp::MaskedEq) j["mask"] = c.mask;
  return j;
}

json numbers(int nr) {
  const std::string name = policy::syscall_name(nr);
  json j = json::object();
  const std::pair<const char*, std::uint32_t> abis[] = {
      {"x86_64", SCMP_ARCH_X86_64}, {"i386", SCMP_ARCH_X86}, {"x32", SCMP_ARCH_X32}};
  for (const auto& [abi, arch] : abis) {
    const int n = seccomp_syscall_resolve_name_arch(arch, name.c_str());
    j[abi] = n < 0 ? json(nullptr) : json(n);
  }
  return j;
}

json model(const policy::Policy& p, std::size_t bpf_instructions) {
  json j;
  j["name"] = p.name;
  j["version"] = p.version;
  j["description"] = p.description;
  j["mode"] = policy::to_string(p.mode);
  j["includes"] = p.includes;
  j["bpf_instructions"] = bpf_instructions;
  j["abis"] = {"x86_64", "i386", "x32"};
  j["trapped"] = json::array();
  for (const auto& trap : trap_set(p)) {
    json t{{"syscall", policy::syscall_name(trap.nr)}, {"numbers", numbers(trap.nr)}};
    t["when"] = json::array();
    t["when_text"] = json::array();
    for (const auto& conj : trap.when) {
      json c = json::array();
      for (const auto& cond : conj) c.push_back(condition_json(cond));
      t["when"].push_back(c);
      t["when_text"].push_back(describe(conj));
    }
    j["trapped"].push_back(t);
  }
  j["rules"] = json::array();
  std::set<int> named;
  for (std::size_t i = 0; i < p.rules.size(); ++i) {
    const Rule& r = p.rules[i];
    json rj{{"index", i}, {"name", r.name}, {"origin", r.origin}, {"file", r.pos.file}, {"line", r.pos.line}};
    rj["syscalls"] = json::array();
    for (int nr : r.syscalls) {
      rj["syscalls"].push_back(policy::syscall_name(nr));
      named.insert(nr);
    }
    rj["args"] = json::array();
    for (const auto& a : r.args) rj["args"].push_back(condition_json(a));
    rj["match"] = matchers(r.match);
    rj["action"] = policy::to_string(r.action);
    if (r.action == Action::Deny) rj["errno"] = policy::errno_name(r.err);
    if (r.action == Action::Return) rj["value"] = r.value;
    rj["audit"] = r.audit;
    j["rules"].push_back(rj);
  }
  j["decisions"] = json::array();
  for (int nr : named) {
    json rows = json::array();
    for (std::size_t i = 0; i < p.rules.size(); ++i) {
      const Rule& r = p.rules[i];
      if (std::ranges::find(r.syscalls, nr) == r.syscalls.end()) continue;
      rows.push_back({{"rule", r.name}, {"index", i}, {"when", conditions(r, nr)}, {"then", outcome(r)}});
    }
    rows.push_back({{"rule", nullptr}, {"when", "otherwise"}, {"then", "allow (kernel decides)"}});
    j["decisions"].push_back({{"syscall", policy::syscall_name(nr)}, {"rows", rows}});
  }
  return j;
}

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

}  // namespace

std::string explain_json(const policy::Policy& policy, std::size_t bpf_instructions) {
  return model(policy, bpf_instructions).dump(2) + "\n";
}

std::string explain_text(const policy::Policy& policy, std::size_t bpf_instructions) {
  const json j = model(policy, bpf_instructions);
  std::string out;
  out += "policy      " + policy.name + "\n";
  out += "version     " + policy.version + "\n";
  if (!policy.description.empty()) out += "description " + policy.description + "\n";
  if (policy.mode == policy::Mode::Audit) {
    out += "mode        audit: every trapped call is allowed and recorded with what the rules would do\n";
  } else if (policy.mode == policy::Mode::Learn) {
    out += "mode        learn: every trapped call is allowed and recorded, for `sysvisor policy learn`\n";
  }
  out += "includes    " + (policy.includes.empty() ? std::string("(none)") : join(policy.includes)) + "\n";
  out += "filter      " + std::to_string(bpf_instructions) + " BPF instructions, for x86_64, i386 and x32\n";

  out += "\nTrapped (SECCOMP_RET_USER_NOTIF; everything else goes straight to the kernel):\n";
  if (j["trapped"].empty()) out += "  nothing\n";
  std::size_t width = 0;
  for (const auto& t : j["trapped"]) width = std::max(width, t["syscall"].get<std::string>().size());
  for (const auto& t : j["trapped"]) {
    std::string nums;
    for (const auto& [abi, n] : t["numbers"].items()) {
      nums += (nums.empty() ? "" : " ") + abi + "=" +
              (n.is_null() ? std::string("-") : std::to_string(n.get<int>()));
    }
    out += "  " + pad(t["syscall"].get<std::string>(), width) + "  [" + nums + "]\n";
    for (const auto& w : t["when_text"])
      out += "  " + pad("", width) + "    when " + w.get<std::string>() + "\n";
  }

  out += "\nRules (first match wins):\n";
  if (policy.rules.empty()) out += "  none\n";
  for (const auto& r : j["rules"]) {
    std::string head =
        "  " + std::to_string(r["index"].get<std::size_t>() + 1) + ". " + r["name"].get<std::string>();
    if (r["origin"] != policy.name) head += "  (from " + r["origin"].get<std::string>() + ")";
    out += head + "  [" + r["file"].get<std::string>() + ":" + std::to_string(r["line"].get<int>()) + "]\n";
    std::vector<std::string> sc;
    for (const auto& s : r["syscalls"]) sc.push_back(s.get<std::string>());
    out += "       syscalls  " + join(sc) + "\n";
    const Rule& rule = policy.rules[r["index"].get<std::size_t>()];
    if (!rule.args.empty()) {
      std::vector<std::string> a;
      for (const auto& c : rule.args) a.push_back(describe(c));
      out += "       args      " + join(a, " && ") + "\n";
    }
    if (!r["match"].empty()) {
      std::vector<std::string> m;
      for (const auto& s : r["match"]) m.push_back(s.get<std::string>());
      out += "       match     " + join(m, " && ") + "\n";
    }
    out += "       action    " + outcome(rule) + "\n";
  }

  out += "\nDecision table:\n";
  for (const auto& d : j["decisions"]) {
    out += "  " + d["syscall"].get<std::string>() + ":\n";
    std::size_t w = 0;
    for (const auto& row : d["rows"]) w = std::max(w, row["when"].get<std::string>().size());
    for (const auto& row : d["rows"]) {
      std::string line =
          "    " + pad(row["when"].get<std::string>(), w) + "  -> " + row["then"].get<std::string>();
      if (!row["rule"].is_null()) line += "  [" + row["rule"].get<std::string>() + "]";
      out += line + "\n";
    }
  }
  return out;
}

}  // namespace sysvisor::tools
