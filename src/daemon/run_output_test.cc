#include "daemon/run_output.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>
#include <string>

#include "daemon/http_api.h"
#include "proto/pool_proto.h"
#include "tests/assert_ok.h"

namespace wb::daemon {
namespace {

class RunOutputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wb-run-output.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    // The spill files have no names: the dir is empty whatever happened.
    EXPECT_EQ(Entries(dir_), 0u) << "a spill file was left in " << dir_;
    ::rmdir(dir_.c_str());
  }

  static size_t Entries(const std::string& dir) {
    size_t n = 0;
    DIR* d = ::opendir(dir.c_str());
    if (!d) return 0;
    while (dirent* e = ::readdir(d))
      n += std::string(e->d_name) != "." && e->d_name != std::string("..");
    ::closedir(d);
    return n;
  }
  static size_t OpenFds() {
    size_t n = Entries("/proc/self/fd");
    return n;
  }
  static std::string Random(size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xff);
    return s;
  }

  std::string dir_;
};

TEST_F(RunOutputTest, BelowTheThresholdStaysInMemory) {
  SpillBuffer b(dir_, 1024);
  ASSERT_OK(b.Append("hello "));
  ASSERT_OK(b.Append(std::string(1018, 'x')));  // exactly the threshold
  EXPECT_FALSE(b.spilled());
  EXPECT_EQ(b.size(), 1024u);
  auto all = b.ReadAll();
  ASSERT_OK(all);
  EXPECT_EQ(*all, "hello " + std::string(1018, 'x'));
}

TEST_F(RunOutputTest, AboveTheThresholdSpillsToAnUnlinkedCloseOnExecFile) {
  const size_t fds = OpenFds();
  const std::string data = Random(300000, 1);
  {
    SpillBuffer b(dir_, 1000);
    // Pieces of odd sizes, as the agent's frames come.
    for (size_t at = 0; at < data.size(); at += 4097) ASSERT_OK(b.Append(data.substr(at, 4097)));
    ASSERT_TRUE(b.spilled());
    EXPECT_EQ(b.size(), data.size());
    EXPECT_EQ(OpenFds(), fds + 1);
    EXPECT_TRUE(::fcntl(b.fd(), F_GETFD) & FD_CLOEXEC);
    char target[256] = {};
    ASSERT_GT(
        ::readlink(("/proc/self/fd/" + std::to_string(b.fd())).c_str(), target, sizeof target - 1),
        0);
    EXPECT_NE(std::string(target).find("(deleted)"), std::string::npos) << target;
    EXPECT_EQ(Entries(dir_), 0u);
    auto all = b.ReadAll();
    ASSERT_OK(all);
    EXPECT_TRUE(*all == data);
    // A range across the memory/file boundary.
    std::string part;
    ASSERT_OK(b.ReadTo(990, 20, part));
    EXPECT_EQ(part, data.substr(990, 20));
    EXPECT_FALSE(b.ReadTo(data.size() - 1, 2, part).ok());
  }
  EXPECT_EQ(OpenFds(), fds) << "the spill file's fd leaked";
}

TEST_F(RunOutputTest, AFailedSpillIsAnErrorNamingTheDirAndSticks) {
  SpillBuffer b(dir_ + "/missing", 10);
  ASSERT_OK(b.Append("0123456789"));
  auto r = b.Append("more");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().ToString().find(dir_ + "/missing"), std::string::npos)
      << r.error().ToString();
  EXPECT_FALSE(b.Append("x").ok());
  EXPECT_EQ(b.size(), 10u);
  EXPECT_EQ(b.NumberArraySize(), std::string("[48,49,50,51,52,53,54,55,56,57]").size());
}

// The encoder's bytes are exactly the whole-string encoders', for every
// byte value (non-UTF-8 included), in memory and spilled, across pieces.
TEST_F(RunOutputTest, EncodedResponsesAreTheWholeStringEncodersBytes) {
  std::string every;
  for (int i = 0; i < 256; ++i) every += static_cast<char>(i);
  const std::vector<std::pair<std::string, std::string>> outputs = {
      {"", ""},
      {"hi\n", ""},
      {"", "oops\xff\xfe\n"},
      {every, every + "\xc3\x28"},
      {Random(3 * kPieceBytes + 7, 2), Random(kPieceBytes + 1, 3)},
      {Random(kPieceBytes, 4), std::string(2, '\0')},
  };
  proto::RunResponse with_extras;
  with_extras.exit_code = 137;
  with_extras.timed_out = true;
  with_extras.stdout_truncated = true;
  with_extras.oom_killed = true;
  with_extras.sandbox = "1c0b39b0e7cd";
  proto::RunResponse with_error = proto::ErrorResponse("bad \"thing\"\n\x01", "internal");
  for (const proto::RunResponse& meta : {proto::RunResponse{}, with_extras, with_error}) {
    for (const auto& [o, e] : outputs) {
      proto::RunResponse whole = meta;
      whole.stdout_data = o;
      whole.stderr_data = e;
      RunOutput held(dir_, 1000);
      ASSERT_OK(held.out.Append(o));
      ASSERT_OK(held.err.Append(e));
      for (auto format : {ResponseEncoder::Format::kPool, ResponseEncoder::Format::kHttp}) {
        const std::string want = format == ResponseEncoder::Format::kPool
                                     ? proto::ToJson(whole)
                                     : HttpRunResponseJson(whole);
        // From the held output, and from the response's own strings.
        for (const RunOutput* src :
             {static_cast<const RunOutput*>(&held), static_cast<const RunOutput*>(nullptr)}) {
          ResponseEncoder enc(format, src ? meta : whole, src);
          EXPECT_EQ(enc.size(), want.size());
          auto got = enc.All();
          ASSERT_OK(got);
          EXPECT_TRUE(*got == want) << "format " << static_cast<int>(format) << ", outputs of "
                                    << o.size() << " and " << e.size() << " bytes";
        }
      }
      // And the socket's reader gets the bytes back.
      auto parsed = proto::ParseStreamFrame(proto::ToJson(whole));
      ASSERT_OK(parsed);
      EXPECT_TRUE(parsed->final.stdout_data == o);
      EXPECT_TRUE(parsed->final.stderr_data == e);
    }
  }
}

TEST_F(RunOutputTest, PiecesAreBounded) {
  RunOutput held(dir_, 1000);
  ASSERT_OK(held.out.Append(std::string(10 * kPieceBytes, '\xff')));
  ResponseEncoder enc(ResponseEncoder::Format::kPool, proto::RunResponse{}, &held);
  std::string piece;
  uint64_t total = 0;
  for (;;) {
    auto more = enc.Next(piece);
    ASSERT_OK(more);
    if (!*more) break;
    EXPECT_LE(piece.size(), 4 * kPieceBytes + 32);
    total += piece.size();
  }
  EXPECT_EQ(total, enc.size());
}

}  // namespace
}  // namespace wb::daemon
