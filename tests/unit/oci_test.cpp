// The OCI ContainerProcessState as runc and crun send it (captured on these machines), and
// the choice of policy.
#include "sysvisor/oci.hpp"

#include <gtest/gtest.h>

namespace sysvisor::oci {
namespace {

// runc 1.1.5, `runc run`: compact, never followed by EOF.
constexpr std::string_view kRunc =
    R"({"ociVersion":"1.0.2-dev","fds":["seccompFd"],"pid":25686,"metadata":"policy=rootless-devices\nfoo=bar",)"
    R"("state":{"ociVersion":"1.0.2-dev","id":"t1","status":"creating","pid":25686,"bundle":"/tmp/b"}})";

// crun 1.8.1: pretty-printed, trailing newline.
constexpr std::string_view kCrun = R"({
    "ociVersion": "0.2.0",
    "fds": [
        "seccompFd"
    ],
    "pid": 26458,
    "metadata": "policy=rootless-devices\nfoo=bar",
    "state": {
        "ociVersion": "0.2.0",
        "id": "t4",
        "status": "creating",
        "pid": 26458,
        "bundle": "/tmp/b"
    }
}
)";

// crun exec: pid 0, bundle ".", no metadata; the annotation names the receiver.
constexpr std::string_view kCrunExec = R"({
    "ociVersion": "0.2.0",
    "fds": [
        "seccompFd"
    ],
    "pid": 0,
    "state": {
        "ociVersion": "0.2.0",
        "id": "box",
        "status": "running",
        "pid": 4711,
        "bundle": ".",
        "annotations": {
            "run.oci.seccomp.receiver": "/run/sysvisor/oci.sock",
            "io.sysvisor.policy": "deny-devices"
        }
    }
}
)";

TEST(OciScan, WholeObjectsOnly) {
  EXPECT_EQ(scan_object(kRunc), Scan::Complete);
  EXPECT_EQ(scan_object(kCrun), Scan::Complete);
  for (std::size_t cut : {std::size_t{0}, std::size_t{1}, std::size_t{40}, kRunc.size() - 1}) {
    EXPECT_EQ(scan_object(kRunc.substr(0, cut)), Scan::Incomplete) << cut;
  }
  EXPECT_EQ(scan_object("  \n"), Scan::Incomplete);
  EXPECT_EQ(scan_object(R"({"a":"}{\"}"})"), Scan::Complete) << "braces inside strings do not count";
  EXPECT_EQ(scan_object(R"({"a":"\\"})"), Scan::Complete) << "an escaped backslash ends before the quote";
  EXPECT_EQ(scan_object("garbage"), Scan::NotAnObject);
  EXPECT_EQ(scan_object("[1,2]"), Scan::NotAnObject);
  EXPECT_EQ(scan_object("{} {}"), Scan::NotAnObject);
  EXPECT_EQ(scan_object("}"), Scan::NotAnObject);
}

// Fed in pieces, the scanner agrees with the whole-buffer scan at every cut and for every
// way of splitting, one byte at a time included.
TEST(OciScan, IncrementalAgreesWithTheWholeScan) {
  for (const std::string_view payload : {kRunc, kCrun, kCrunExec}) {
    ObjectScanner bytewise;
    for (std::size_t i = 0; i < payload.size(); ++i) {
      EXPECT_EQ(bytewise.feed(payload.substr(i, 1)), scan_object(payload.substr(0, i + 1))) << i;
    }
    EXPECT_EQ(bytewise.state(), Scan::Complete);
    EXPECT_EQ(bytewise.scanned(), payload.size());
    for (const std::size_t chunk : {2U, 7U, 64U, 4096U}) {
      ObjectScanner pieces;
      for (std::size_t i = 0; i < payload.size(); i += chunk) (void)pieces.feed(payload.substr(i, chunk));
      EXPECT_EQ(pieces.state(), Scan::Complete) << chunk;
    }
  }
  // A string and an escape split between two reads.
  ObjectScanner split;
  EXPECT_EQ(split.feed(R"({"a":"}\)"), Scan::Incomplete);
  EXPECT_EQ(split.feed(R"("{"})"), Scan::Complete);
  EXPECT_EQ(split.feed(" \n"), Scan::Complete);
  EXPECT_EQ(split.feed("x"), Scan::NotAnObject);
  EXPECT_EQ(split.feed(" "), Scan::NotAnObject) << "refused stays refused";
  ObjectScanner garbage;
  EXPECT_EQ(garbage.feed("  "), Scan::Incomplete);
  EXPECT_EQ(garbage.feed("x{}"), Scan::NotAnObject);
}

// A megabyte dribbled a byte at a time, as a hostile peer sends it: each feed looks at its
// own byte only (the whole-buffer rescan of every read made this about 5 * 10^11 steps).
TEST(OciScan, DribbledPayloadIsScannedOnce) {
  const std::string big = R"({"pad":")" + std::string(1 << 20, 'x');
  ObjectScanner scanner;
  for (const char c : big) ASSERT_EQ(scanner.feed(std::string_view(&c, 1)), Scan::Incomplete);
  EXPECT_EQ(scanner.scanned(), big.size());
  EXPECT_EQ(scanner.feed(R"("})"), Scan::Complete);
}

TEST(OciParse, RuncCompact) {
  const auto ps = parse_process_state(kRunc);
  ASSERT_TRUE(ps) << ps.error();
  EXPECT_EQ(ps->oci_version, "1.0.2-dev");
  EXPECT_EQ(ps->fds, std::vector<std::string>{"seccompFd"});
  EXPECT_EQ(ps->pid, 25686);
  EXPECT_EQ(ps->metadata, "policy=rootless-devices\nfoo=bar");
  EXPECT_EQ(ps->state.id, "t1");
  EXPECT_EQ(ps->state.status, "creating");
  EXPECT_EQ(ps->state.bundle, "/tmp/b");
  EXPECT_FALSE(ps->pretty);
  EXPECT_EQ(guess_engine(*ps), "runc");
}

TEST(OciParse, CrunPrettyAndExec) {
  const auto ps = parse_process_state(kCrun);
  ASSERT_TRUE(ps) << ps.error();
  EXPECT_TRUE(ps->pretty);
  EXPECT_EQ(guess_engine(*ps), "crun");
  const auto exec = parse_process_state(kCrunExec);
  ASSERT_TRUE(exec) << exec.error();
  EXPECT_EQ(exec->pid, 0);
  EXPECT_EQ(live_pid(*exec), 4711);
  auto both_zero = *exec;
  both_zero.state.pid = 0;  // what crun 1.8.1's exec really sends
  EXPECT_EQ(live_pid(both_zero), 0);
  EXPECT_EQ(exec->state.bundle, ".");
  EXPECT_EQ(exec->state.annotations.at("io.sysvisor.policy"), "deny-devices");
}

TEST(OciParse, AnyFieldOrderAndUnknownFields) {
  const auto ps = parse_process_state(
      R"({"state":{"pid":9,"extra":[1,2],"id":"x"},"future":{"a":1},"pid":10,"fds":["other","seccompFd"]})");
  ASSERT_TRUE(ps) << ps.error();
  EXPECT_EQ(ps->pid, 10);
  EXPECT_EQ(ps->state.pid, 9);
  EXPECT_EQ(listener_index(*ps), 1U);
  EXPECT_EQ(guess_engine(*ps), "oci");
}

TEST(OciParse, Rejections) {
  const auto error_of = [](std::string_view text) {
    const auto ps = parse_process_state(text);
    return ps ? std::string("accepted") : ps.error();
  };
  EXPECT_NE(error_of(R"({"pid": nope})").find("malformed JSON"), std::string::npos);
  EXPECT_NE(error_of("[]").find("not a JSON object"), std::string::npos);
  EXPECT_NE(error_of(R"({"pid":1})").find("`state`"), std::string::npos);
  EXPECT_NE(error_of(R"({"pid":1,"state":{}})").find("`state.id` is missing"), std::string::npos);
  EXPECT_NE(error_of(R"({"pid":1,"state":{"id":"a b"}})").find("not a valid container id"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"pid":-3,"state":{"id":"a"}})").find("out of range"), std::string::npos);
  EXPECT_NE(error_of(R"({"pid":"1","state":{"id":"a"}})").find("not an integer"), std::string::npos);
  EXPECT_NE(error_of(R"({"pid":1,"state":{"id":"a","annotations":{"k":1}}})").find("annotation `k`"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"pid":1,"fds":"seccompFd","state":{"id":"a"}})").find("`fds`"), std::string::npos);
  const std::string huge = "{\"pad\":\"" + std::string(kMaxPayloadBytes, 'x') + "\"}";
  EXPECT_NE(error_of(huge).find("exceeds the limit"), std::string::npos);
}

TEST(OciParse, BigAnnotationsAreFine) {
  std::string text = R"({"pid":1,"state":{"id":"a","annotations":{)";
  for (int i = 0; i < 2000; ++i)
    text += (i ? "," : "") + ("\"k" + std::to_string(i) + "\":\"" + std::string(40, 'v') + "\"");
  text += "}}}";
  ASSERT_GT(text.size(), 64U * 1024);
  const auto ps = parse_process_state(text);
  ASSERT_TRUE(ps) << ps.error();
  EXPECT_EQ(ps->state.annotations.size(), 2000U);
}

TEST(OciParse, ListenerIndex) {
  auto ps = *parse_process_state(kRunc);
  EXPECT_EQ(listener_index(ps), 0U);
  ps.fds.clear();
  EXPECT_EQ(listener_index(ps), 0U) << "no names: the one fd";
  ps.fds = {"other"};
  EXPECT_FALSE(listener_index(ps));
}

TEST(OciMetadata, PolicyAndLabels) {
  const auto m = parse_metadata("policy=rootless-devices\n team = web \r\n\nnot a pair\nempty=\n");
  EXPECT_EQ(m.policy, "rootless-devices");
  EXPECT_EQ(m.labels.at("team"), "web");
  EXPECT_EQ(m.labels.at("empty"), "");
  EXPECT_EQ(m.ignored, std::vector<std::string>{"not a pair"});
  EXPECT_EQ(parse_metadata("").policy, "");
}

TEST(OciPolicy, MetadataThenAnnotationThenDefault) {
  auto ps = *parse_process_state(kCrunExec);
  ps.metadata = "policy=from-metadata";
  auto c = select_policy(ps, parse_metadata(ps.metadata), "dflt");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->name, "from-metadata");
  EXPECT_EQ(c->source, PolicySource::Metadata);
  c = select_policy(ps, parse_metadata("team=x"), "dflt");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->name, "deny-devices");
  EXPECT_EQ(c->source, PolicySource::Annotation);
  ps.state.annotations.clear();
  c = select_policy(ps, parse_metadata(""), "dflt");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->name, "dflt");
  EXPECT_EQ(c->source, PolicySource::Default);
  c = select_policy(ps, parse_metadata(""), "");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().find("listenerMetadata"), std::string::npos);
}

TEST(OciEngine, PodmanFromItsAnnotation) {
  auto ps = *parse_process_state(kCrun);
  ps.state.annotations["io.container.manager"] = "libpod";
  EXPECT_EQ(guess_engine(ps), "podman/crun");
  ps.oci_version = "9.9";
  EXPECT_EQ(guess_engine(ps), "podman");
}

}  // namespace
}  // namespace sysvisor::oci
