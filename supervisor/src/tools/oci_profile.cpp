// `sysvisor policy oci-profile`: an OCI linux.seccomp profile that sends what the policy traps
// to sysvisor's OCI listener, alone or merged into a base profile.
//
// Merging, as runc and crun load a profile (libseccomp 2.5, rules added in profile order), has
// one trap: for one syscall an unconditional rule wins over every conditional one, whatever
// the order (measured: an unconditional ALLOW of mknod plus a NOTIFY of mknod when
// (mode & S_IFMT) == S_IFCHR never notifies). So for every trapped syscall S the base's rules
// naming S are taken apart: S leaves them, the NOTIFY rules for the trap conditions T are
// added, and each base rule for S comes back restricted to NOT T (as extra conditions), so
// every call the policy does not trap is still decided by the base exactly as before.
#include <algorithm>
#include <bit>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "sysvisor/tools.hpp"

namespace sysvisor::tools {
namespace {

using nlohmann::json;
using policy::ArgCondition;
using policy::CmpOp;

constexpr std::size_t kMaxTerms = 256;
constexpr int kMaxComplementMaskBits = 4;  // S_IFMT has 4 bits: 15 other values

const std::pair<CmpOp, const char*> kOps[] = {
    {CmpOp::Eq, "SCMP_CMP_EQ"},
    {CmpOp::Ne, "SCMP_CMP_NE"},
    {CmpOp::Lt, "SCMP_CMP_LT"},
    {CmpOp::Le, "SCMP_CMP_LE"},
    {CmpOp::Gt, "SCMP_CMP_GT"},
    {CmpOp::Ge, "SCMP_CMP_GE"},
    {CmpOp::MaskedEq, "SCMP_CMP_MASKED_EQ"},
};

json to_oci(const ArgCondition& c) {
  const char* op = "SCMP_CMP_EQ";
  for (const auto& [o, name] : kOps) {
    if (o == c.op) op = name;
  }
  if (c.op == CmpOp::MaskedEq)
    return json{{"index", c.index}, {"value", c.mask}, {"valueTwo", c.value}, {"op", op}};
  return json{{"index", c.index}, {"value", c.value}, {"valueTwo", 0}, {"op", op}};
}

std::expected<ArgCondition, std::string> from_oci(const json& a) {
  ArgCondition c;
  if (!a.is_object() || !a.contains("index") || !a.contains("op"))
    return std::unexpected("an arg without index or op");
  c.index = a["index"].get<unsigned>();
  const auto op = a["op"].get<std::string>();
  bool known = false;
  for (const auto& [o, name] : kOps) {
    if (op == name) {
      c.op = o;
      known = true;
    }
  }
  if (!known) return std::unexpected("unknown op `" + op + "`");
  const std::uint64_t value = a.value("value", std::uint64_t{0});
  const std::uint64_t two = a.value("valueTwo", std::uint64_t{0});
  if (c.op == CmpOp::MaskedEq) {
    c.mask = value;
    c.value = two;
  } else {
    c.value = value;
  }
  return c;
}

bool same(const ArgCondition& a, const ArgCondition& b) {
  return a.index == b.index && a.op == b.op && a.value == b.value &&
         (a.op != CmpOp::MaskedEq || a.mask == b.mask);
}

// NOT c, as a disjunction of conditions; nullopt when NOT c always holds.
std::expected<std::optional<std::vector<ArgCondition>>, std::string> negate(const ArgCondition& c) {
  ArgCondition n = c;
  switch (c.op) {
    case CmpOp::Eq:
      n.op = CmpOp::Ne;
      break;
    case CmpOp::Ne:
      n.op = CmpOp::Eq;
      break;
    case CmpOp::Lt:
      n.op = CmpOp::Ge;
      break;
    case CmpOp::Le:
      n.op = CmpOp::Gt;
      break;
    case CmpOp::Gt:
      n.op = CmpOp::Le;
      break;
    case CmpOp::Ge:
      n.op = CmpOp::Lt;
      break;
    case CmpOp::MaskedEq: {
      if ((c.value & ~c.mask) != 0) return std::optional<std::vector<ArgCondition>>();  // never holds
      if (std::popcount(c.mask) > kMaxComplementMaskBits) {
        return std::unexpected("cannot express NOT (" + describe(c) +
                               ") for libseccomp: the mask has more than " +
                               std::to_string(kMaxComplementMaskBits) + " bits");
      }
      // Every other value of the masked bits.
      std::vector<ArgCondition> out;
      std::vector<std::uint64_t> bits;
      for (unsigned b = 0; b < 64; ++b) {
        if ((c.mask >> b) & 1U) bits.push_back(std::uint64_t{1} << b);
      }
      for (std::uint64_t k = 0; k < (std::uint64_t{1} << bits.size()); ++k) {
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < bits.size(); ++i) {
          if ((k >> i) & 1U) v |= bits[i];
        }
        if (v == c.value) continue;
        ArgCondition o = c;
        o.value = v;
        out.push_back(o);
      }
      return std::optional(out);
    }
  }
  return std::optional(std::vector<ArgCondition>{n});
}

// A conjunction libseccomp can take as one rule: at most one condition per argument.
// nullopt: the conditions contradict each other (the rule would never match).
std::expected<std::optional<Conjunction>, std::string> simplify(const Conjunction& in) {
  Conjunction out;
  for (const auto& c : in) {
    auto it = std::ranges::find(out, c.index, &ArgCondition::index);
    if (it == out.end()) {
      out.push_back(c);
      continue;
    }
    ArgCondition& o = *it;
    if (same(o, c)) continue;
    if (o.op == CmpOp::MaskedEq && c.op == CmpOp::MaskedEq && o.mask == c.mask)
      return std::optional<Conjunction>();
    if (o.op == CmpOp::Eq || c.op == CmpOp::Eq) {
      const ArgCondition& eq = o.op == CmpOp::Eq ? o : c;
      const ArgCondition& other = o.op == CmpOp::Eq ? c : o;
      if (!holds(other, eq.value)) return std::optional<Conjunction>();
      o = eq;
      continue;
    }
    if (o.op == CmpOp::MaskedEq && c.op == CmpOp::Ne && (c.value & o.mask) != o.value) continue;
    if (c.op == CmpOp::MaskedEq && o.op == CmpOp::Ne && (o.value & c.mask) != c.value) {
      o = c;
      continue;
    }
    return std::unexpected("cannot combine `" + describe(o) + "` and `" + describe(c) +
                           "` in one libseccomp rule (both test argument " + std::to_string(c.index) + ")");
  }
  std::ranges::sort(out, {}, &ArgCondition::index);
  return std::optional(out);
}

// NOT (C1 or C2 or ...), as a list of conjunctions (empty: never).
std::expected<std::vector<Conjunction>, std::string> complement(const std::vector<Conjunction>& when) {
  std::vector<Conjunction> terms{Conjunction{}};
  for (const auto& conj : when) {
    // NOT (c1 and c2 ...) = NOT c1 or NOT c2 ...
    std::vector<ArgCondition> alternatives;
    bool always = false;
    for (const auto& c : conj) {
      auto n = negate(c);
      if (!n) return std::unexpected(n.error());
      if (!*n) {
        always = true;
        break;
      }
      alternatives.insert(alternatives.end(), (*n)->begin(), (*n)->end());
    }
    if (always) continue;
    std::vector<Conjunction> next;
    for (const auto& t : terms) {
      for (const auto& alt : alternatives) {
        Conjunction candidate = t;
        candidate.push_back(alt);
        auto s = simplify(candidate);
        if (!s) return std::unexpected(s.error());
        if (!*s) continue;
        const auto equal = [&](const Conjunction& x) {
          return std::ranges::equal(x, **s, [](const auto& a, const auto& b) { return same(a, b); });
        };
        if (std::ranges::none_of(next, equal)) next.push_back(std::move(**s));
      }
    }
    if (next.size() > kMaxTerms) return std::unexpected("the complement of the trap conditions is too large");
    terms = std::move(next);
  }
  return terms;
}

json notify_rule(const std::string& name, const Conjunction& conj) {
  json args = json::array();
  for (const auto& c : conj) args.push_back(to_oci(c));
  return json{{"names", {name}}, {"action", "SCMP_ACT_NOTIFY"}, {"args", args}};
}

std::vector<std::string> names_of(const json& entry) {
  std::vector<std::string> out;
  if (entry.contains("names") && entry["names"].is_array()) {
    for (const auto& n : entry["names"]) {
      if (n.is_string()) out.push_back(n.get<std::string>());
    }
  } else if (entry.contains("name") && entry["name"].is_string()) {  // the oldest Docker format
    out.push_back(entry["name"].get<std::string>());
  }
  return out;
}

std::expected<OciProfile, std::string> merge(const policy::Policy& policy, const OciOptions& options) {
  OciProfile result;
  const auto traps = trap_set(policy);
  json profile;
  if (options.base) {
    profile = json::parse(*options.base, nullptr, false);
    if (profile.is_discarded() || !profile.is_object())
      return std::unexpected("the base profile is not a JSON object");
    if (!profile.contains("defaultAction") || !profile["defaultAction"].is_string()) {
      return std::unexpected("the base profile has no `defaultAction`");
    }
    if (profile.contains("syscalls") && !profile["syscalls"].is_array()) {
      return std::unexpected("the base profile's `syscalls` is not a list");
    }
    if (!profile.contains("syscalls")) profile["syscalls"] = json::array();
  } else {
    profile = json{{"defaultAction", "SCMP_ACT_ALLOW"},
                   {"architectures", {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}},
                   {"syscalls", json::array()}};
  }
  const std::string default_action = profile["defaultAction"].get<std::string>();
  json& syscalls = profile["syscalls"];

  json added = json::array();
  for (const auto& trap : traps) {
    const std::string name = policy::syscall_name(trap.nr);
    auto rest = complement(trap.when);
    if (!rest) return std::unexpected(name + ": " + rest.error());
    json kept = json::array();
    json restricted = json::array();
    bool base_allows = default_action == "SCMP_ACT_ALLOW";
    bool named = false;
    for (auto& entry : syscalls) {
      if (!entry.is_object())
        return std::unexpected("the base profile has a syscall entry that is not an object");
      auto names = names_of(entry);
      if (std::ranges::find(names, name) == names.end()) {
        kept.push_back(entry);
        continue;
      }
      named = true;
      const std::string action = entry.value("action", std::string());
      base_allows = base_allows || action == "SCMP_ACT_ALLOW";
      if (action != "SCMP_ACT_ALLOW") {
        result.warnings.push_back(
            "the base profile answers " + name + " with " + action +
            " (for some calls); what the policy traps is decided by the policy instead");
      }
      std::erase(names, name);
      if (!names.empty()) {
        json rest_entry = entry;
        rest_entry.erase("name");
        rest_entry["names"] = names;
        kept.push_back(rest_entry);
      }
      if (action == default_action) continue;  // the same as no rule
      Conjunction base_args;
      if (entry.contains("args") && entry["args"].is_array()) {
        for (const auto& a : entry["args"]) {
          auto c = from_oci(a);
          if (!c) return std::unexpected("the base profile's rule for " + name + ": " + c.error());
          base_args.push_back(*c);
        }
      }
      for (const auto& term : *rest) {
        Conjunction both = base_args;
        both.insert(both.end(), term.begin(), term.end());
        auto s = simplify(both);
        if (!s) return std::unexpected("merging the base profile's rule for " + name + ": " + s.error());
        if (!*s) continue;
        json e = entry;
        e.erase("name");
        e["names"] = {name};
        e["args"] = json::array();
        for (const auto& c : **s) e["args"].push_back(to_oci(c));
        restricted.push_back(e);
      }
    }
    if (!named && !base_allows) {
      result.warnings.push_back("the base profile refuses " + name + " (default action " + default_action +
                                "); what the policy traps is decided by the policy instead");
    }
    syscalls = std::move(kept);
    for (const auto& conj : trap.when) added.push_back(notify_rule(name, conj));
    for (auto& e : restricted) added.push_back(std::move(e));
  }
  for (auto& e : added) syscalls.push_back(std::move(e));
  profile["listenerPath"] = options.listener_path;
  profile["listenerMetadata"] = "policy=" + policy.name;
  result.json = profile.dump(2) + "\n";
  return result;
}

}  // namespace

std::expected<OciProfile, std::string> oci_profile(const policy::Policy& policy, const OciOptions& options) {
  try {
    return merge(policy, options);
  } catch (const nlohmann::json::exception& e) {  // a base profile with a value of the wrong type
    return std::unexpected(std::string("the base profile: ") + e.what());
  }
}

}  // namespace sysvisor::tools
