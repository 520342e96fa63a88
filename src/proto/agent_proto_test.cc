#include "proto/agent_proto.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/assert_ok.h"

namespace wb::proto {
namespace {

const FrameType kAllTypes[] = {
    FrameType::kHeartbeat,    FrameType::kHeartbeatReply, FrameType::kExec,
    FrameType::kStdin,        FrameType::kStdinClose,     FrameType::kStdout,
    FrameType::kStderr,       FrameType::kExit,           FrameType::kFailure,
    FrameType::kIdentity,     FrameType::kIdentityReply,  FrameType::kStarted,
    FrameType::kAttach,       FrameType::kResize,         FrameType::kSignal,
    FrameType::kSignalReply,  FrameType::kList,           FrameType::kListReply,
    FrameType::kClaim,        FrameType::kClaimReply,     FrameType::kFile,
    FrameType::kFileReply,    FrameType::kFileEnd,        FrameType::kWatchEvents,
    FrameType::kOpError,      FrameType::kChannelData,    FrameType::kChannelClose,
    FrameType::kChannelGrant, FrameType::kMuxReset,       FrameType::kMuxResetDone,
    FrameType::kTunnel,       FrameType::kTunnelReply,
};

::testing::AssertionResult Contains(const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "\"" << haystack << "\" does not contain \"" << needle << "\"";
}

std::vector<Frame> Drain(FrameDecoder& d) {
  std::vector<Frame> out;
  while (auto f = d.Next()) out.push_back(std::move(*f));
  return out;
}

// A varied stream: every type, empty payloads, binary bytes.
std::vector<Frame> SampleFrames() {
  return {
      {FrameType::kHeartbeat, ""},
      {FrameType::kHeartbeatReply, R"({"pid":1})"},
      {FrameType::kExec, R"({"argv":["ls"]})"},
      {FrameType::kStdin, std::string("a\0b\xff\n", 5)},
      {FrameType::kStdinClose, ""},
      {FrameType::kStdout, std::string(300, 'o')},
      {FrameType::kStderr, "err"},
      {FrameType::kExit, R"({"exit_code":0})"},
      {FrameType::kFailure, "no such file"},
  };
}

std::string EncodeAll(const std::vector<Frame>& frames) {
  std::string out;
  for (const auto& f : frames) AppendFrame(out, f.type, f.payload);
  return out;
}

void ExpectSameFrames(const std::vector<Frame>& got, const std::vector<Frame>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].type, want[i].type) << "frame " << i;
    EXPECT_EQ(got[i].payload, want[i].payload) << "frame " << i;
  }
}

std::string Header(char type, uint32_t n) {
  std::string h(kHeaderSize, '\0');
  h[0] = type;
  h[1] = static_cast<char>(n >> 24);
  h[2] = static_cast<char>(n >> 16);
  h[3] = static_cast<char>(n >> 8);
  h[4] = static_cast<char>(n);
  return h;
}

// --- encoding ------------------------------------------------------------------

TEST(EncodeFrameTest, HeaderIsTypeAndBigEndianLength) {
  std::string payload(0x010203, 'x');
  std::string enc = EncodeFrame(FrameType::kStdout, payload);
  ASSERT_EQ(enc.size(), kHeaderSize + payload.size());
  EXPECT_EQ(enc.substr(0, kHeaderSize), std::string("O\x00\x01\x02\x03", 5));
  EXPECT_EQ(enc.substr(kHeaderSize), payload);
}

TEST(EncodeFrameTest, AppendFrameAppends) {
  std::string out = "prefix";
  AppendFrame(out, FrameType::kHeartbeat, "");
  EXPECT_EQ(out, std::string("prefixH\0\0\0\0", 11));
}

TEST(EncodeFrameTest, KnownTypesAreExactlyTheEnumerators) {
  for (FrameType t : kAllTypes) EXPECT_TRUE(IsKnownFrameType(static_cast<char>(t)));
  int known = 0;
  for (int c = 0; c < 256; ++c) known += IsKnownFrameType(static_cast<char>(c)) ? 1 : 0;
  EXPECT_EQ(known, 32);
}

// --- decoding ------------------------------------------------------------------

TEST(FrameDecoderTest, RoundTripsEveryFrameType) {
  for (FrameType t : kAllTypes) {
    std::string payload = std::string("payload of ") + static_cast<char>(t);
    FrameDecoder d;
    ASSERT_TRUE(d.Feed(EncodeFrame(t, payload)).ok());
    auto f = d.Next();
    ASSERT_TRUE(f.has_value()) << static_cast<char>(t);
    EXPECT_EQ(f->type, t);
    EXPECT_EQ(f->payload, payload);
    EXPECT_FALSE(d.Next().has_value());
    EXPECT_EQ(d.buffered(), 0u);
  }
}

TEST(FrameDecoderTest, SeveralFramesInOneFeed) {
  auto frames = SampleFrames();
  FrameDecoder d;
  auto r = d.Feed(EncodeAll(frames));
  ASSERT_OK(r);
  ExpectSameFrames(Drain(d), frames);
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(FrameDecoderTest, ByteByByteFeedYieldsSameFrames) {
  auto frames = SampleFrames();
  std::string wire = EncodeAll(frames);
  FrameDecoder d;
  std::vector<Frame> got;
  for (char c : wire) {
    auto r = d.Feed(std::string_view(&c, 1));
    ASSERT_OK(r);
    for (auto& f : Drain(d)) got.push_back(std::move(f));
  }
  ExpectSameFrames(got, frames);
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(FrameDecoderTest, PartialFrameIsBufferedNotEmitted) {
  std::string wire = EncodeFrame(FrameType::kStdout, "hello");
  FrameDecoder d;
  ASSERT_TRUE(d.Feed(wire.substr(0, 3)).ok());
  EXPECT_FALSE(d.Next().has_value());
  EXPECT_EQ(d.buffered(), 3u);
  ASSERT_TRUE(d.Feed(wire.substr(3, 4)).ok());  // header + 2 payload bytes
  EXPECT_FALSE(d.Next().has_value());
  EXPECT_EQ(d.buffered(), 7u);
  ASSERT_TRUE(d.Feed(wire.substr(7)).ok());
  auto f = d.Next();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->payload, "hello");
}

TEST(FrameDecoderTest, FrameSplitAcrossFeedsWithNextFrameAttached) {
  std::string wire = EncodeFrame(FrameType::kStdout, "abc") + EncodeFrame(FrameType::kStderr, "de");
  FrameDecoder d;
  ASSERT_TRUE(d.Feed(wire.substr(0, 10)).ok());  // first frame + 2 bytes of the second
  auto first = Drain(d);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].payload, "abc");
  EXPECT_EQ(d.buffered(), 2u);
  ASSERT_TRUE(d.Feed(wire.substr(10)).ok());
  auto second = Drain(d);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].type, FrameType::kStderr);
  EXPECT_EQ(second[0].payload, "de");
}

TEST(FrameDecoderTest, OversizeHeaderFailsBeforePayload) {
  FrameDecoder d;
  auto r = d.Feed(Header('O', kMaxFrame + 1));
  ASSERT_FALSE(r.ok()) << "must fail on the header alone";
  EXPECT_TRUE(Contains(r.error().ToString(), std::to_string(kMaxFrame)));
  EXPECT_FALSE(d.Next().has_value());
}

TEST(FrameDecoderTest, HugeLengthFails) {
  FrameDecoder d;
  auto r = d.Feed(Header('I', 0xffffffffu));
  ASSERT_FALSE(r.ok());
}

TEST(FrameDecoderTest, UnknownTypeFails) {
  FrameDecoder d;
  auto r = d.Feed(Header('z', 0));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.error().ToString(), "unknown frame type"));
}

TEST(FrameDecoderTest, NulTypeByteFails) {
  FrameDecoder d;
  EXPECT_FALSE(d.Feed(Header('\0', 1) + "x").ok());
}

TEST(FrameDecoderTest, UnknownTypeAfterGoodFrameFails) {
  FrameDecoder d;
  auto r = d.Feed(EncodeFrame(FrameType::kStdout, "ok") + Header('?', 0));
  ASSERT_FALSE(r.ok());
  // The frame before the garbage was complete and is still delivered.
  auto f = d.Next();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->payload, "ok");
}

TEST(FrameDecoderTest, StaysFailedAfterError) {
  FrameDecoder d;
  auto first = d.Feed(Header('z', 0));
  ASSERT_FALSE(first.ok());
  auto again = d.Feed(EncodeFrame(FrameType::kHeartbeat, ""));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().ToString(), first.error().ToString());
  EXPECT_FALSE(d.Next().has_value());
  EXPECT_FALSE(d.Feed("").ok());
}

TEST(FrameDecoderTest, StaysFailedAfterOversize) {
  FrameDecoder d;
  ASSERT_FALSE(d.Feed(Header('O', kMaxFrame + 1)).ok());
  EXPECT_FALSE(d.Feed(std::string(16, 'x')).ok());
  EXPECT_FALSE(d.Feed(EncodeFrame(FrameType::kHeartbeat, "")).ok());
  EXPECT_FALSE(d.Next().has_value());
}

TEST(FrameDecoderTest, ExactlyMaxFrameIsAccepted) {
  std::string payload(kMaxFrame, 'x');
  payload.front() = 'a';
  payload.back() = 'z';
  FrameDecoder d;
  auto r = d.Feed(EncodeFrame(FrameType::kStdout, payload));
  ASSERT_OK(r);
  auto f = d.Next();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->type, FrameType::kStdout);
  EXPECT_EQ(f->payload.size(), kMaxFrame);
  EXPECT_TRUE(f->payload == payload);  // not EXPECT_EQ: avoid printing 16 MiB
}

TEST(FrameDecoderTest, MaxFrameHeaderAloneIsNotAnError) {
  FrameDecoder d;
  auto r = d.Feed(Header('O', kMaxFrame));
  ASSERT_OK(r);
  EXPECT_FALSE(d.Next().has_value());
}

TEST(FrameDecoderTest, EmptyFeedIsHarmless) {
  FrameDecoder d;
  ASSERT_TRUE(d.Feed("").ok());
  EXPECT_FALSE(d.Next().has_value());
  EXPECT_EQ(d.buffered(), 0u);
}

// --- ExecRequest / ExecExit JSON -------------------------------------------------

TEST(ExecRequestTest, JsonRoundTrip) {
  ExecRequest r;
  r.argv = {"/bin/sh", "-c", "echo \"hi\"; exit 3", ""};
  r.env = {"FOO=bar", "EMPTY=", "EQ=a=b"};
  r.cwd = "/work dir";
  r.user = "user:tty";
  r.timeout_ms = 1500;
  r.output_cap = 4096;
  r.stdin = true;
  auto parsed = ParseExecRequest(ToJson(r));
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->argv, r.argv);
  EXPECT_EQ(parsed->env, r.env);
  EXPECT_EQ(parsed->cwd, r.cwd);
  EXPECT_EQ(parsed->user, r.user);
  EXPECT_EQ(parsed->timeout_ms, r.timeout_ms);
  EXPECT_EQ(parsed->output_cap, r.output_cap);
  EXPECT_EQ(parsed->stdin, r.stdin);
}

TEST(ExecRequestTest, DefaultsWhenFieldsAbsent) {
  auto r = ParseExecRequest(R"({"argv":["ls"]})");
  ASSERT_OK(r);
  EXPECT_EQ(r->argv, std::vector<std::string>{"ls"});
  EXPECT_TRUE(r->env.empty());
  EXPECT_EQ(r->cwd, "");
  EXPECT_EQ(r->user, "");
  EXPECT_EQ(r->timeout_ms, 0u);
  EXPECT_EQ(r->output_cap, kDefaultOutputCap);
  EXPECT_FALSE(r->stdin);
}

TEST(ExecRequestTest, NullFieldsMeanDefaults) {
  auto r = ParseExecRequest(
      R"({"argv":["ls"],"env":null,"cwd":null,"user":null,"timeout_ms":null,"output_cap":null,"stdin":null})");
  ASSERT_OK(r);
  EXPECT_TRUE(r->env.empty());
  EXPECT_EQ(r->output_cap, kDefaultOutputCap);
  EXPECT_FALSE(r->stdin);
}

TEST(ExecRequestTest, UnknownFieldsAreIgnored) {
  auto r = ParseExecRequest(R"({"argv":["ls"],"future":{"x":1}})");
  ASSERT_OK(r);
  EXPECT_EQ(r->argv.size(), 1u);
}

TEST(ExecRequestTest, RejectsInvalidJson) {
  auto r = ParseExecRequest(R"({"argv":["ls"])");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.error().ToString(), "invalid JSON"));
  EXPECT_FALSE(ParseExecRequest("").ok());
}

// Issue 19, finding 4: the agent's peer cannot make it build a deep tree.
TEST(ExecRequestTest, RejectsDeepNesting) {
  std::string deep = R"({"argv":["ls"],"env":)" + std::string(200 * 1024, '[') +
                     std::string(200 * 1024, ']') + "}";
  auto r = ParseExecRequest(deep);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.error().ToString(), "JSON nested deeper than 64 levels"))
      << r.error().ToString();
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
}

TEST(ExecRequestTest, RejectsNonObject) {
  EXPECT_FALSE(ParseExecRequest(R"(["ls"])").ok());
  EXPECT_FALSE(ParseExecRequest(R"("ls")").ok());
  EXPECT_FALSE(ParseExecRequest("42").ok());
  EXPECT_FALSE(ParseExecRequest("null").ok());
}

TEST(ExecRequestTest, RejectsMissingOrEmptyArgv) {
  EXPECT_FALSE(ParseExecRequest("{}").ok());
  EXPECT_FALSE(ParseExecRequest(R"({"argv":[]})").ok());
}

TEST(ExecRequestTest, RejectsArgvWithNonString) {
  EXPECT_FALSE(ParseExecRequest(R"({"argv":["ls",1]})").ok());
  EXPECT_FALSE(ParseExecRequest(R"({"argv":[null]})").ok());
  EXPECT_FALSE(ParseExecRequest(R"({"argv":"ls"})").ok());
}

TEST(ExecRequestTest, RejectsNulInArgv) {
  EXPECT_FALSE(ParseExecRequest(R"({"argv":["a\u0000b"]})").ok());
}

TEST(ExecRequestTest, RejectsEnvEntryWithoutEquals) {
  auto r = ParseExecRequest(R"({"argv":["ls"],"env":["FOO"]})");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.error().ToString(), "FOO"));
}

TEST(ExecRequestTest, RejectsEnvEntryStartingWithEquals) {
  EXPECT_FALSE(ParseExecRequest(R"({"argv":["ls"],"env":["=x"]})").ok());
}

TEST(ExecRequestTest, RejectsNulInEnv) {
  EXPECT_FALSE(ParseExecRequest(R"({"argv":["ls"],"env":["A=b\u0000c"]})").ok());
}

TEST(ExecRequestTest, RejectsNegativeTimeout) {
  auto r = ParseExecRequest(R"({"argv":["ls"],"timeout_ms":-1})");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.error().ToString(), "timeout_ms"));
}

TEST(ExecRequestTest, RejectsFractionalTimeout) {
  EXPECT_FALSE(ParseExecRequest(R"({"argv":["ls"],"timeout_ms":1.5})").ok());
}

TEST(ExecRequestTest, RejectsWrongTypes) {
  EXPECT_FALSE(ParseExecRequest(R"({"argv":["ls"],"env":"A=b"})").ok());
  EXPECT_FALSE(ParseExecRequest(R"({"argv":["ls"],"env":[1]})").ok());
  EXPECT_FALSE(ParseExecRequest(R"({"argv":["ls"],"cwd":5})").ok());
  EXPECT_FALSE(ParseExecRequest(R"({"argv":["ls"],"user":1000})").ok());
  EXPECT_FALSE(ParseExecRequest(R"({"argv":["ls"],"timeout_ms":"10"})").ok());
  EXPECT_FALSE(ParseExecRequest(R"({"argv":["ls"],"output_cap":"1m"})").ok());
  EXPECT_FALSE(ParseExecRequest(R"({"argv":["ls"],"output_cap":-5})").ok());
  EXPECT_FALSE(ParseExecRequest(R"({"argv":["ls"],"stdin":"yes"})").ok());
  EXPECT_FALSE(ParseExecRequest(R"({"argv":["ls"],"stdin":1})").ok());
}

TEST(ExecExitTest, JsonRoundTrip) {
  ExecExit e;
  e.exit_code = 137;
  e.signal = 9;
  e.timed_out = true;
  e.stdout_truncated = true;
  e.stderr_truncated = false;
  e.error = "exec \"x\": No such file or directory";
  auto parsed = ParseExecExit(ToJson(e));
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->exit_code, 137);
  EXPECT_EQ(parsed->signal, 9);
  EXPECT_TRUE(parsed->timed_out);
  EXPECT_TRUE(parsed->stdout_truncated);
  EXPECT_FALSE(parsed->stderr_truncated);
  EXPECT_EQ(parsed->error, e.error);
}

TEST(ExecExitTest, JsonRoundTripOfOtherFlags) {
  ExecExit e;
  e.exit_code = 127;
  e.stderr_truncated = true;
  auto parsed = ParseExecExit(ToJson(e));
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->exit_code, 127);
  EXPECT_EQ(parsed->signal, 0);
  EXPECT_FALSE(parsed->timed_out);
  EXPECT_FALSE(parsed->stdout_truncated);
  EXPECT_TRUE(parsed->stderr_truncated);
  EXPECT_EQ(parsed->error, "");
}

TEST(ExecExitTest, DefaultsWhenFieldsAbsent) {
  auto e = ParseExecExit("{}");
  ASSERT_OK(e);
  EXPECT_EQ(e->exit_code, 0);
  EXPECT_EQ(e->signal, 0);
  EXPECT_FALSE(e->timed_out);
  EXPECT_EQ(e->error, "");
}

TEST(ExecExitTest, RejectsBadInput) {
  EXPECT_FALSE(ParseExecExit("not json").ok());
  EXPECT_FALSE(ParseExecExit("[]").ok());
  EXPECT_FALSE(ParseExecExit(R"({"exit_code":"0"})").ok());
  EXPECT_FALSE(ParseExecExit(R"({"exit_code":1.5})").ok());
  EXPECT_FALSE(ParseExecExit(R"({"timed_out":0})").ok());
  EXPECT_FALSE(ParseExecExit(R"({"error":false})").ok());
}

}  // namespace
}  // namespace wb::proto
