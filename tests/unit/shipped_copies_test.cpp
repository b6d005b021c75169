// Copies of shipped files that live elsewhere in the tree must not drift from the originals:
// the README's "shipped, commented line by line" policy, the Kubernetes ConfigMap's policy and
// the Kubernetes seccomp profile.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace {

namespace fs = std::filesystem;

std::string read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

const fs::path kSource = SYSVISOR_SOURCE_DIR;

// The fenced block that follows `marker` in `markdown`, without its fences; empty if none.
std::string fenced_block_after(const std::string& markdown, const std::string& marker) {
  const auto at = markdown.find(marker);
  if (at == std::string::npos) return {};
  const auto open = markdown.find("```", at + marker.size());
  if (open == std::string::npos) return {};
  const auto body = markdown.find('\n', open);
  if (body == std::string::npos) return {};
  const auto close = markdown.find("\n```", body);
  if (close == std::string::npos) return {};
  return markdown.substr(body + 1, close - body);  // up to and including the last newline
}

// Structural equality of two YAML trees: same kinds, same scalars, same sequences in order,
// same mapping keys with equal values (in any order). Comments and styles do not count.
// On a difference, `where` names the first one.
bool same_yaml(const YAML::Node& a, const YAML::Node& b, const std::string& path, std::string& where) {
  if (a.Type() != b.Type()) {
    where = path + ": different kinds of node";
    return false;
  }
  switch (a.Type()) {
    case YAML::NodeType::Scalar:
      if (a.Scalar() != b.Scalar()) {
        where = path + ": `" + a.Scalar() + "` vs `" + b.Scalar() + "`";
        return false;
      }
      return true;
    case YAML::NodeType::Sequence:
      if (a.size() != b.size()) {
        where = path + ": " + std::to_string(a.size()) + " vs " + std::to_string(b.size()) + " items";
        return false;
      }
      for (std::size_t i = 0; i < a.size(); ++i) {
        if (!same_yaml(a[i], b[i], path + "[" + std::to_string(i) + "]", where)) return false;
      }
      return true;
    case YAML::NodeType::Map:
      if (a.size() != b.size()) {
        where = path + ": " + std::to_string(a.size()) + " vs " + std::to_string(b.size()) + " keys";
        return false;
      }
      for (const auto& kv : a) {
        const std::string key = kv.first.as<std::string>();
        const YAML::Node other = b[key];
        if (!other) {
          where = path + "." + key + ": missing in the copy";
          return false;
        }
        if (!same_yaml(kv.second, other, path + "." + key, where)) return false;
      }
      return true;
    default:
      return true;  // Null (or Undefined on both sides)
  }
}

TEST(ShippedCopies, ReadmePolicyIsTheShippedFile) {
  const std::string readme = read(kSource / "README.md");
  const std::string marker = "`policies/rootless-devices.yaml`, shipped, commented line by line:";
  const std::string block = fenced_block_after(readme, marker);
  ASSERT_FALSE(block.empty()) << "README.md has no fenced block after \"" << marker << "\"";
  const std::string shipped = read(kSource / "policies/rootless-devices.yaml");
  // Textual: the README promises the file itself, comments included.
  EXPECT_EQ(block, shipped) << "README.md's block under \"" << marker
                            << "\" differs from policies/rootless-devices.yaml: copy the file into it";
}

TEST(ShippedCopies, KubernetesConfigMapPolicyIsTheShippedFile) {
  const YAML::Node shipped = YAML::LoadFile((kSource / "policies/rootless-devices.yaml").string());
  const std::vector<YAML::Node> manifests =
      YAML::LoadAllFromFile((kSource / "deploy/kubernetes/sysvisor-daemonset.yaml").string());
  std::string embedded;
  for (const auto& m : manifests) {
    if (m["kind"] && m["kind"].as<std::string>() == "ConfigMap" && m["data"] &&
        m["data"]["rootless-devices.yaml"]) {
      embedded = m["data"]["rootless-devices.yaml"].as<std::string>();
    }
  }
  ASSERT_FALSE(embedded.empty())
      << "deploy/kubernetes/sysvisor-daemonset.yaml has no ConfigMap with data.rootless-devices.yaml";
  std::string where;
  EXPECT_TRUE(same_yaml(shipped, YAML::Load(embedded), "rootless-devices", where))
      << "the ConfigMap's rootless-devices.yaml differs from policies/rootless-devices.yaml at " << where;
}

TEST(ShippedCopies, KubernetesSeccompProfileIsTheShippedOciProfile) {
  const auto shipped = nlohmann::json::parse(read(kSource / "policies/oci/rootless-devices.json"));
  const auto copy =
      nlohmann::json::parse(read(kSource / "deploy/kubernetes/seccomp-profile-rootless-devices.json"));
  EXPECT_EQ(copy, shipped) << "deploy/kubernetes/seccomp-profile-rootless-devices.json differs from "
                              "policies/oci/rootless-devices.json (JSON values; key order does not count)";
}

// The comparison itself must see drift, or the tests above could not fail.
TEST(ShippedCopies, StructuralComparisonSeesDrift) {
  const YAML::Node a = YAML::Load("name: x\nrules:\n  - {action: deny, errno: EPERM}\n");
  std::string where;
  EXPECT_TRUE(same_yaml(a, YAML::Load("rules: [{errno: EPERM, action: deny}]  # c\nname: x\n"), "p", where));
  EXPECT_FALSE(same_yaml(a, YAML::Load("name: x\nrules:\n  - {action: deny, errno: EACCES}\n"), "p", where));
  EXPECT_EQ(where, "p.rules[0].errno: `EPERM` vs `EACCES`");
  EXPECT_FALSE(same_yaml(a, YAML::Load("name: x\nrules:\n  - {action: deny}\n"), "p", where));
  EXPECT_FALSE(same_yaml(a, YAML::Load("name: x\nrules: []\n"), "p", where));
  EXPECT_FALSE(
      same_yaml(a, YAML::Load("name: x\nrules:\n  - {action: deny, errno: EPERM}\nextra: 1\n"), "p", where));
}

}  // namespace
