// Reading YAML along a schema, shared by the policy loader and the configuration file.
//
// The reader walks the YAML tree along the format's schema (never recursing on the input's own
// shape), collects every error it finds with its file:line:column, and never throws: yaml-cpp
// throws on malformed input and on deep nesting, and document() turns that into YamlParse errors.
// Private to sysvisor_policy (policy.cpp and config.cpp).
#pragma once

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sysvisor/policy.hpp"

namespace sysvisor::policy::detail {

// Larger files are refused before YAML sees them: a policy or a configuration is a few KiB.
inline constexpr std::size_t kMaxInputBytes = std::size_t{256} << 10;
// After this many errors in one file the reader stops adding more (a last error says so).
inline constexpr std::size_t kMaxErrors = 100;

// What a node is, for "expected X, got Y" messages.
const char* kind(const YAML::Node& node);

// "a, b, c"
std::string join(std::span<const std::string_view> words);

// The candidate a typo most likely meant (`acton` -> `action`, `EACCESS` -> `EACCES`): the
// nearest by edit distance (a swap of two neighbours counts one), within a third of the
// word's length, case ignored; empty when none is that near or two are equally near.
std::string_view closest(std::string_view word, std::span<const std::string_view> candidates);
// "; did you mean `X`?" for closest(), or "".
std::string did_you_mean(std::string_view word, std::span<const std::string_view> candidates);

// One key of a mapping and its value.
struct Entry {
  std::string name;
  YAML::Node key;
  YAML::Node value;
};
using Entries = std::map<std::string, Entry, std::less<>>;

const Entry* find(const Entries& entries, std::string_view name);

// An integer as written: decimal, 0x hexadecimal or 0o octal, with an optional leading '-'.
struct ParsedInt {
  bool negative = false;
  std::uint64_t magnitude = 0;
};
// nullopt and `why` set when `text` is not such a number (or does not fit in 64 bits).
std::optional<ParsedInt> parse_int(std::string_view text, std::string& why);

// "the file is N bytes, more than the limit of 262144 bytes (256 KiB)"
std::string too_large(std::uint64_t size);
// The whole file, or an Io error (not a regular file, ...) or a BadValue error (larger than
// kMaxInputBytes, with its size and the limit).
std::optional<std::string> read_text(const std::string& path, LoadError& error);

class YamlReader {
 public:
  explicit YamlReader(std::string file) : file_(std::move(file)) {}

  [[nodiscard]] const std::string& file() const { return file_; }
  [[nodiscard]] Position position(const YAML::Mark& mark) const;
  [[nodiscard]] Position position(const YAML::Node& node) const;

  void fail(ErrorCode code, Position pos, std::string message);
  void fail(ErrorCode code, const YAML::Node& at, std::string message);
  // An empty value (`key:`) has no text of its own; yaml-cpp marks the next token, so point at
  // the key instead.
  void fail(ErrorCode code, const Entry& entry, std::string message);
  void wrong_type(const Entry& entry, const char* expected);

  [[nodiscard]] bool failed() const { return !errors_.empty(); }
  [[nodiscard]] std::size_t error_count() const { return errors_.size(); }
  [[nodiscard]] std::vector<LoadError> take_errors() { return std::move(errors_); }

  // `text` as exactly one YAML document that is a mapping; nullopt (with errors) otherwise.
  // `what` names the expected content for the message on an empty file. Never throws.
  std::optional<YAML::Node> document(std::string_view text, const char* what);

  // The keys of a mapping, checked against the keys the format allows: not a mapping, a key that
  // is not a string, an unknown key and a key given twice are errors. yaml-cpp keeps duplicate
  // keys (and lookups see only the first), so they are found here by walking the pairs.
  std::optional<Entries> mapping(const YAML::Node& node, std::span<const std::string_view> allowed,
                                 const std::string& what);
  const Entry* require(const Entries& entries, std::string_view name, const YAML::Node& mapping,
                       const std::string& what);

  std::optional<std::string> string(const Entry& entry);
  std::optional<bool> boolean(const Entry& entry);
  // A list (never a single string) of at least one string; each string with its node.
  std::optional<std::vector<std::pair<std::string, YAML::Node>>> string_list(const Entry& entry,
                                                                             const char* expected);
  std::optional<std::uint64_t> u64(const Entry& entry);  // negative: two's complement
  std::optional<std::int64_t> i64(const Entry& entry);
  std::optional<std::int64_t> i64(const YAML::Node& node, const std::string& what);

 private:
  std::string file_;
  std::vector<LoadError> errors_;
};

// Runs `body` and turns any exception into an error of `reader` (yaml-cpp throws on broken
// nodes; std::bad_alloc on absurd input). Returns whether body completed.
template <typename Body>
bool guarded(YamlReader& reader, Body&& body) noexcept {
  try {
    body();
    return true;
  } catch (const YAML::DeepRecursion& e) {
    // Its own message says "bad file".
    reader.fail(ErrorCode::YamlParse, reader.position(e.mark), "YAML nested too deeply");
  } catch (const YAML::Exception& e) {
    reader.fail(ErrorCode::YamlParse, reader.position(e.mark), e.msg);
  } catch (const std::exception& e) {
    reader.fail(ErrorCode::YamlParse, Position{reader.file(), 0, 0}, e.what());
  } catch (...) {
    reader.fail(ErrorCode::YamlParse, Position{reader.file(), 0, 0}, "unexpected error while reading");
  }
  return false;
}

}  // namespace sysvisor::policy::detail
