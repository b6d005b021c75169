// `sysvisor policy ...`: thin wrappers around the loader and sysvisor_tools. Results go to
// stdout, diagnostics of the command itself (a policy that cannot be found) to stderr.
#include "policy_cmd.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "sysvisor/filter.hpp"
#include "sysvisor/learn.hpp"
#include "sysvisor/policy.hpp"
#include "sysvisor/tools.hpp"

namespace sysvisor::cmd {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using policy::LoadError;
using policy::Policy;

constexpr const char* kDefaultPolicies = "/etc/sysvisor/policies.d";

// Ends the parse with an exit status.
[[noreturn]] void finish(int status) {
  throw CLI::RuntimeError(status);
}

std::string where(const policy::Position& p) {
  std::string out = p.file;
  if (p.line > 0) out += ":" + std::to_string(p.line) + ":" + std::to_string(p.column);
  return out;
}

std::string diagnostic(const policy::Position& p, const char* kind, const char* code,
                       const std::string& message) {
  return where(p) + ": " + kind + ": [" + code + "] " + message;
}

json position_json(const policy::Position& p, const char* code, const std::string& message) {
  return json{{"file", p.file}, {"line", p.line}, {"column", p.column}, {"code", code}, {"message", message}};
}

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec1;
  std::error_code ec2;
  return a == b || fs::weakly_canonical(a, ec1) == fs::weakly_canonical(b, ec2);
}

// The policy a file defines, from a load that may have brought in its includes' files too.
std::shared_ptr<const Policy> defined_in(const policy::LoadResult& loaded, const std::string& file) {
  for (const auto& [name, p] : loaded.policies) {
    if (same_file(p->pos.file, file)) return p;
  }
  return nullptr;
}

void print_errors(const std::vector<LoadError>& errors) {
  for (const auto& e : errors) {
    std::printf("%s\n", diagnostic(e.pos, "error", policy::to_string(e.code), e.message).c_str());
  }
}

// ---- check ----
struct CheckOptions {
  std::vector<std::string> files;
  bool json = false;
};

// A decision-case file (`sysvisor policy test`): a mapping with a `cases:` key. Anything that
// does not even parse is left to the policy loader, which says where it breaks.
bool is_case_file(const std::string& file) {
  try {
    const YAML::Node root = YAML::LoadFile(file);
    return root.IsMap() && root["cases"] && !root["rules"];
  } catch (const std::exception&) {
    return false;
  }
}

// A case file among the files given to `check`: its cases run against the policy it names,
// found among the policies given or else in the case file's own directory.
bool check_case_file(const std::string& file, const std::optional<policy::LoadResult>& given, json& doc,
                     std::vector<std::string>& text) {
  const auto error = [&](const policy::Position& pos, const char* code, const std::string& message) {
    doc["errors"].push_back(position_json(pos, code, message));
    text.push_back(diagnostic(pos, "error", code, message));
    return false;
  };
  auto cases = tools::load_cases(file);
  if (!cases) {
    for (const auto& e : cases.error()) error(e.pos, policy::to_string(e.code), e.message);
    return false;
  }
  if (!cases->policy) {
    const std::string message =
        "decision cases that name no policy (`policy: NAME`): not run; run them "
        "with `sysvisor policy test POLICY " +
        file + "`";
    doc["warnings"].push_back(position_json(policy::Position{file, 0, 0}, "cases", message));
    text.push_back(file + ": warning: [cases] " + message);
    return true;
  }
  std::shared_ptr<const Policy> p;
  if (given) {
    if (const auto it = given->policies.find(*cases->policy); it != given->policies.end()) p = it->second;
  }
  const fs::path dir = fs::path(file).parent_path().empty() ? fs::path(".") : fs::path(file).parent_path();
  if (!p) {
    if (auto loaded = policy::load_policy_dir(dir)) {
      if (const auto it = loaded->policies.find(*cases->policy); it != loaded->policies.end()) p = it->second;
    }
  }
  if (!p) {
    return error(cases->policy_pos, "unknown-policy",
                 "the cases are for policy `" + *cases->policy +
                     "`, which no file given and no valid policy in `" + dir.string() + "` defines");
  }
  auto bpf = filter::compile(*p);
  if (!bpf)
    return error(policy::Position{file, 0, 0}, "filter", "compile the filter: " + bpf.error().message());
  const auto failures = tools::run_cases(*p, &*bpf, *cases);
  for (const auto& f : failures) {
    doc["errors"].push_back(position_json(f.failed->pos, "case", f.message));
    text.push_back(f.message);
  }
  doc["cases"].push_back(
      json{{"file", file}, {"policy", p->name}, {"cases", cases->cases.size()}, {"failed", failures.size()}});
  if (failures.empty()) {
    text.push_back(file + ": ok: " + std::to_string(cases->cases.size()) + " decision cases of policy " +
                   p->name + " hold");
  }
  return failures.empty();
}

int check(const CheckOptions& o) {
  json doc{{"files", o.files},
           {"errors", json::array()},
           {"warnings", json::array()},
           {"policies", json::array()},
           {"cases", json::array()}};
  std::vector<std::string> text;
  bool failed = false;
  std::vector<std::string> policy_files;
  std::vector<std::string> case_files;
  for (const auto& file : o.files) (is_case_file(file) ? case_files : policy_files).push_back(file);
  std::vector<fs::path> paths(policy_files.begin(), policy_files.end());
  auto all = policy::load_policy_files(paths);
  std::vector<LoadError> errors = all ? std::vector<LoadError>{} : all.error();
  for (const auto& e : errors) {
    doc["errors"].push_back(position_json(e.pos, policy::to_string(e.code), e.message));
    text.push_back(diagnostic(e.pos, "error", policy::to_string(e.code), e.message));
  }
  failed = !errors.empty();
  for (const auto& file : policy_files) {
    // A file none of whose errors is its own still gets its summary when it loads alone.
    std::optional<policy::LoadResult> loaded;
    if (all) {
      loaded = *all;
    } else {
      const bool has_error =
          std::ranges::any_of(errors, [&](const LoadError& e) { return same_file(e.pos.file, file); });
      if (has_error) continue;
      auto alone = policy::load_policy_files({fs::path(file)});
      if (!alone) continue;  // its errors are in a file it includes: reported above
      loaded = std::move(*alone);
    }
    for (const auto& w : loaded->warnings) {
      if (!same_file(w.pos.file, file)) continue;
      doc["warnings"].push_back(position_json(w.pos, policy::to_string(w.code), w.message));
      text.push_back(diagnostic(w.pos, "warning", policy::to_string(w.code), w.message));
    }
    const auto p = defined_in(*loaded, file);
    if (!p) continue;
    auto bpf = filter::compile(*p);
    if (!bpf) {
      failed = true;
      const std::string message = "compile the filter: " + bpf.error().message();
      doc["errors"].push_back(position_json(policy::Position{file, 0, 0}, "filter", message));
      text.push_back(file + ": error: [filter] " + message);
      continue;
    }
    doc["policies"].push_back(json{{"file", file},
                                   {"name", p->name},
                                   {"version", p->version},
                                   {"mode", policy::to_string(p->mode)},
                                   {"rules", p->own_rules.size()},
                                   {"effective_rules", p->rules.size()},
                                   {"bpf_instructions", bpf->size()}});
    const std::string mode =
        p->mode == policy::Mode::Enforce ? "" : std::string("mode ") + policy::to_string(p->mode) + ", ";
    text.push_back(file + ": ok: policy " + p->name + " v" + p->version + ", " + mode +
                   std::to_string(p->own_rules.size()) + " rules (" + std::to_string(p->rules.size()) +
                   " effective), " + std::to_string(bpf->size()) + " BPF instructions");
  }
  const std::optional<policy::LoadResult> given = all ? std::optional(*all) : std::nullopt;
  for (const auto& file : case_files) {
    if (!check_case_file(file, given, doc, text)) failed = true;
  }
  if (o.json) {
    std::printf("%s\n", doc.dump(2).c_str());
  } else {
    for (const auto& line : text) std::printf("%s\n", line.c_str());
  }
  return failed ? 1 : 0;
}

// ---- finding a policy by file or by name ----
struct Found {
  std::shared_ptr<const Policy> policy;
};

// FILE if it is one (or looks like a path), else NAME in `dir`. Prints why not and exits 1.
Found find_policy(const std::string& file_or_name, const std::string& dir) {
  const bool looks_like_file = file_or_name.find('/') != std::string::npos ||
                               file_or_name.ends_with(".yaml") || file_or_name.ends_with(".yml") ||
                               fs::is_regular_file(file_or_name);
  if (looks_like_file) {
    auto loaded = policy::load_policy_files({fs::path(file_or_name)});
    if (!loaded) {
      print_errors(loaded.error());
      std::fprintf(stderr, "sysvisor: `%s` is not a valid policy (%zu error(s))\n", file_or_name.c_str(),
                   loaded.error().size());
      finish(1);
    }
    auto p = defined_in(*loaded, file_or_name);
    if (!p) {
      std::fprintf(stderr, "sysvisor: `%s` defines no policy\n", file_or_name.c_str());
      finish(1);
    }
    return Found{p};
  }
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    std::fprintf(stderr,
                 "sysvisor: no policy file `%s`, and no policy directory `%s` to look the name up in "
                 "(give a file, or --policies DIR)\n",
                 file_or_name.c_str(), dir.c_str());
    finish(1);
  }
  auto loaded = policy::load_policy_dir(dir);
  if (!loaded) {
    print_errors(loaded.error());
    std::fprintf(stderr, "sysvisor: the policies in `%s` have %zu error(s)\n", dir.c_str(),
                 loaded.error().size());
    finish(1);
  }
  const auto it = loaded->policies.find(file_or_name);
  if (it == loaded->policies.end()) {
    std::string names;
    for (const auto& [name, p] : loaded->policies) names += (names.empty() ? "" : ", ") + name;
    std::fprintf(stderr, "sysvisor: no policy named `%s` in `%s` (it has: %s)\n", file_or_name.c_str(),
                 dir.c_str(), names.empty() ? "none" : names.c_str());
    finish(1);
  }
  return Found{it->second};
}

std::vector<sock_filter> compile_or_exit(const Policy& p) {
  auto bpf = filter::compile(p);
  if (!bpf) {
    std::fprintf(stderr, "sysvisor: policy `%s`: compile the filter: %s\n", p.name.c_str(),
                 bpf.error().message().c_str());
    finish(1);
  }
  return std::move(*bpf);
}

// ---- explain ----
struct ExplainOptions {
  std::string policy;
  std::string dir = kDefaultPolicies;
  bool json = false;
};

int explain(const ExplainOptions& o) {
  const auto found = find_policy(o.policy, o.dir);
  const auto bpf = compile_or_exit(*found.policy);
  const std::string out = o.json ? tools::explain_json(*found.policy, bpf.size())
                                 : tools::explain_text(*found.policy, bpf.size());
  std::fputs(out.c_str(), stdout);
  return 0;
}

// ---- test ----
struct TestOptions {
  std::string policy;
  std::vector<std::string> cases;
  std::string dir = kDefaultPolicies;
};

int test(const TestOptions& o) {
  const auto found = find_policy(o.policy, o.dir);
  const Policy& p = *found.policy;
  const auto bpf = compile_or_exit(p);
  std::size_t total = 0;
  std::size_t failed = 0;
  bool bad_file = false;
  for (const auto& file : o.cases) {
    auto cases = tools::load_cases(file);
    if (!cases) {
      print_errors(cases.error());
      bad_file = true;
      continue;
    }
    if (cases->policy && *cases->policy != p.name) {
      std::printf("%s\n",
                  diagnostic(cases->policy_pos, "error", "bad-value",
                             "the cases are for policy `" + *cases->policy + "`, not `" + p.name + "`")
                      .c_str());
      bad_file = true;
      continue;
    }
    const auto failures = tools::run_cases(p, &bpf, *cases);
    for (const auto& f : failures) std::printf("%s\n", f.message.c_str());
    total += cases->cases.size();
    failed += failures.size();
  }
  std::printf("%zu cases, %zu failed%s\n", total, failed, bad_file ? " (and case files with errors)" : "");
  return failed == 0 && !bad_file ? 0 : 1;
}

// ---- oci-profile ----
struct OciOptions {
  std::string policy;
  std::string base;
  std::string listener = "/run/sysvisor/oci.sock";
  std::string dir = kDefaultPolicies;
};

int oci_profile(const OciOptions& o) {
  const auto found = find_policy(o.policy, o.dir);
  tools::OciOptions options;
  options.listener_path = o.listener;
  if (!o.base.empty()) {
    std::ifstream in(o.base, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "sysvisor: cannot read the base profile `%s`\n", o.base.c_str());
      return 1;
    }
    std::ostringstream text;
    text << in.rdbuf();
    options.base = text.str();
  }
  auto profile = tools::oci_profile(*found.policy, options);
  if (!profile) {
    std::fprintf(stderr, "sysvisor: %s%s\n", o.base.empty() ? "" : (o.base + ": ").c_str(),
                 profile.error().c_str());
    return 1;
  }
  for (const auto& w : profile->warnings) std::fprintf(stderr, "sysvisor: warning: %s\n", w.c_str());
  std::fputs(profile->json.c_str(), stdout);
  return 0;
}

struct LearnOptions {
  std::string records;
  std::string container;
  std::string owner = "0";
  std::string name = "learned";
  std::string output = "-";
  std::string cases;
};

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    std::fprintf(stderr, "sysvisor: cannot write `%s`\n", path.c_str());
    return false;
  }
  return true;
}

int learn(const LearnOptions& o) {
  std::string text;
  if (o.records == "-") {
    std::ostringstream in;
    in << std::cin.rdbuf();
    text = in.str();
  } else {
    std::ifstream in(o.records, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "sysvisor: cannot read the audit log `%s`\n", o.records.c_str());
      return 1;
    }
    std::ostringstream buf;
    buf << in.rdbuf();
    text = buf.str();
  }
  tools::LearnOptions options;
  options.file = o.records;
  options.container = o.container;
  if (o.owner != "any") {
    unsigned long uid = 0;
    const char* end = o.owner.data() + o.owner.size();
    const auto [ptr, ec] = std::from_chars(o.owner.data(), end, uid);
    if (o.owner.empty() || ec != std::errc{} || ptr != end || uid >= 0xffffffffUL) {
      std::fprintf(stderr, "sysvisor: --owner must be a uid (a number) or `any`, got `%s`\n",
                   o.owner.c_str());
      return 2;
    }
    options.owner = static_cast<uid_t>(uid);
  }
  options.name = o.name;
  const auto learned = tools::learn(text, options);
  if (!learned) {
    for (const auto& e : learned.error()) std::fprintf(stderr, "%s\n", e.c_str());
    return 1;
  }
  for (const auto& n : learned->notes) std::fprintf(stderr, "%s\n", n.c_str());  // skipped lines, warnings
  // The cases go beside the policy (NAME.cases.yaml) unless --cases says where.
  std::string cases = o.cases;
  if (cases.empty() && o.output != "-") {
    std::filesystem::path p(o.output);
    cases = (p.parent_path() / (p.stem().string() + ".cases.yaml")).string();
  }
  if (o.output == "-") {
    std::fputs(learned->policy.c_str(), stdout);
  } else if (!write_file(o.output, learned->policy)) {
    return 1;
  }
  if (!cases.empty() && !write_file(cases, learned->cases)) return 1;
  std::fprintf(stderr, "sysvisor: policy `%s` learned from %zu records%s%s\n", o.name.c_str(),
               learned->records, cases.empty() ? "" : "; cases in ", cases.c_str());
  return 0;
}

// Runs a command; turns an unexpected exception into exit status 1.
template <class F>
void run(F&& command) {
  int status = 1;
  try {
    status = command();
  } catch (const CLI::RuntimeError&) {
    throw;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sysvisor: %s\n", e.what());
  }
  std::fflush(stdout);
  finish(status);
}

}  // namespace

void add_policy_commands(CLI::App& app) {
  auto* policy_cmd = app.add_subcommand("policy", "Policy tools: check, explain, test, oci-profile, learn");
  policy_cmd->require_subcommand(1);

  auto check_options = std::make_shared<CheckOptions>();
  auto* c = policy_cmd->add_subcommand(
      "check",
      "Validate policy files (with their includes): prints FILE:LINE:COL: error|warning: [code] message, "
      "then a summary per valid file. A decision-case file among them (a mapping with `cases:`, such as "
      "policies/NAME.cases.yaml) is run against the policy it names, as `policy test` would. Exit 0 when "
      "there is no error (warnings allowed), 1 otherwise");
  c->add_option("FILE", check_options->files, "Policy files and decision-case files")->required();
  c->add_flag("--json", check_options->json, "One JSON document: files, errors, warnings, policies, cases");
  c->callback([check_options] { run([&] { return check(*check_options); }); });

  auto explain_options = std::make_shared<ExplainOptions>();
  auto* e = policy_cmd->add_subcommand(
      "explain",
      "What a policy traps (per syscall, on x86_64, i386 and x32), its rules, its decision table and "
      "the size of its filter");
  e->add_option("POLICY", explain_options->policy, "A policy file, or the name of a policy in --policies")
      ->required();
  e->add_option("--policies", explain_options->dir, "Where policy names are looked up")
      ->capture_default_str();
  e->add_flag("--json", explain_options->json, "JSON instead of text");
  e->callback([explain_options] { run([&] { return explain(*explain_options); }); });

  auto test_options = std::make_shared<TestOptions>();
  auto* t = policy_cmd->add_subcommand(
      "test",
      "Run decision cases (NAME.cases.yaml, see docs/policy-tools.md) against a policy: prints each failing "
      "case and `N cases, F failed`; exit 1 when a case fails or a case file has errors");
  t->add_option("POLICY", test_options->policy, "A policy file, or the name of a policy in --policies")
      ->required();
  t->add_option("CASES", test_options->cases, "Case files")->required();
  t->add_option("--policies", test_options->dir, "Where policy names are looked up")->capture_default_str();
  t->callback([test_options] { run([&] { return test(*test_options); }); });

  auto oci_options = std::make_shared<OciOptions>();
  auto* o = policy_cmd->add_subcommand(
      "oci-profile",
      "Print an OCI linux.seccomp profile that notifies sysvisor's OCI listener of what the policy traps: "
      "a minimal one (default allow), or --base merged so that trapped calls really are trapped");
  o->add_option("POLICY", oci_options->policy, "A policy file, or the name of a policy in --policies")
      ->required();
  o->add_option("--base", oci_options->base,
                "A seccomp profile to merge into (containers-common/Docker format or plain OCI)");
  o->add_option("--listener", oci_options->listener, "listenerPath")->capture_default_str();
  o->add_option("--policies", oci_options->dir, "Where policy names are looked up")->capture_default_str();
  o->callback([oci_options] { run([&] { return oci_profile(*oci_options); }); });

  auto learn_options = std::make_shared<LearnOptions>();
  auto* l = policy_cmd->add_subcommand(
      "learn",
      "Write a minimal policy from the audit records of a workload run in learn or audit mode: what was "
      "seen is emulated (devices, filesystem types, path prefixes, xattr names, scheduling bounds), the "
      "rest of those calls refused; with NAME.cases.yaml for `policy test` (docs/audit.md)");
  l->add_option("AUDIT", learn_options->records, "The audit log (JSON lines), - for stdin")->required();
  l->add_option("--container", learn_options->container, "Only this container's records");
  l->add_option("--owner", learn_options->owner,
                "Only records of containers this host uid owns (the records' owner_uid: the user whose "
                "launcher handed the container off). Another user may run a container with the same id, "
                "so by default only root's (0) are taken; `any` takes every owner's, and records "
                "without owner_uid (older files). How many were left out is said on stderr")
      ->capture_default_str();
  l->add_option("--name", learn_options->name, "The policy's name")->capture_default_str();
  l->add_option("--output", learn_options->output, "The policy file, - for stdout")->capture_default_str();
  l->add_option("--cases", learn_options->cases,
                "The cases file (default: beside --output, STEM.cases.yaml; none with stdout)");
  l->callback([learn_options] { run([&] { return learn(*learn_options); }); });
}

int exit_status(const CLI::App& app, const CLI::ParseError& e) {
  const int status = app.exit(e);
  if (dynamic_cast<const CLI::RuntimeError*>(&e) != nullptr) return status;
  return status == 0 ? 0 : 2;
}

}  // namespace sysvisor::cmd
