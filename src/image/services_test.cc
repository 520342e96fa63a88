#include "image/services.h"

#include <gtest/gtest.h>

namespace wb {
namespace {

std::string ErrOf(std::string_view v) {
  auto r = ParseServicesLabel("svc:1", v);
  EXPECT_FALSE(r.ok()) << v;
  return r.ok() ? "" : r.error().ToString();
}

TEST(ServicesLabel, ParsesEveryKey) {
  auto r = ParseServicesLabel("img",
                              R"([{"name":"interp","argv":["python3","/srv/s.py","--port","49999"]},
          {"name":"b.2","argv":["sh"],"user":"user","cwd":"/tmp","env":["A=1","B="]}])");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].name, "interp");
  EXPECT_EQ((*r)[0].argv, (std::vector<std::string>{"python3", "/srv/s.py", "--port", "49999"}));
  EXPECT_EQ((*r)[0].user, "");
  EXPECT_EQ((*r)[1].user, "user");
  EXPECT_EQ((*r)[1].cwd, "/tmp");
  EXPECT_EQ((*r)[1].env, (std::vector<std::string>{"A=1", "B="}));
  auto empty = ParseServicesLabel("img", "[]");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(ServicesLabel, ErrorsNameTheImageAndTheField) {
  std::string e = ErrOf(R"([{"name":"a","argv":[]}])");
  EXPECT_NE(e.find("svc:1"), std::string::npos) << e;
  EXPECT_NE(e.find("org.warmbox.services: [0].argv"), std::string::npos) << e;
  EXPECT_NE(ErrOf("{").find("not JSON"), std::string::npos);
  EXPECT_NE(ErrOf(R"({"name":"a"})").find("expected a JSON array"), std::string::npos);
  EXPECT_NE(ErrOf(R"([1])").find("[0]"), std::string::npos);
  EXPECT_NE(ErrOf(R"([{"argv":["x"]}])").find("[0].name"), std::string::npos);
  EXPECT_NE(ErrOf(R"([{"name":"a/b","argv":["x"]}])").find("[0].name"), std::string::npos);
  EXPECT_NE(ErrOf(R"([{"name":"a","argv":["x"]},{"name":"a","argv":["y"]}])").find("named twice"),
            std::string::npos);
  EXPECT_NE(ErrOf(R"([{"name":"a","argv":[""]}])").find("[0].argv"), std::string::npos);
  EXPECT_NE(ErrOf(R"([{"name":"a","argv":["x",1]}])").find("[0].argv"), std::string::npos);
  EXPECT_NE(ErrOf(R"([{"name":"a","argv":["x"],"cwd":"rel"}])").find("[0].cwd"), std::string::npos);
  EXPECT_NE(ErrOf(R"([{"name":"a","argv":["x"],"user":5}])").find("[0].user"), std::string::npos);
  EXPECT_NE(ErrOf(R"([{"name":"a","argv":["x"],"env":["NOEQ"]}])").find("[0].env"),
            std::string::npos);
  EXPECT_NE(ErrOf(R"([{"name":"a","argv":["x"],"port":1}])").find("[0].port): unknown key"),
            std::string::npos);
  std::string many = "[";
  for (int i = 0; i < 17; ++i)
    many += std::string(i ? "," : "") + R"({"name":"s)" + std::to_string(i) + R"(","argv":["x"]})";
  EXPECT_NE(ErrOf(many + "]").find("more than 16"), std::string::npos);
  EXPECT_EQ(ParseServicesLabel("img", "[1]").error().code, ErrorCode::kInvalidArgument);
}

TEST(ServicesLabel, Readiness) {
  auto r = ParseServicesLabel("img", R"([{"name":"a","argv":["x"],"ready_port":49999},
          {"name":"b","argv":["x"],"ready_port":1,"ready_timeout_s":600},{"name":"c","argv":["x"]}])");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ((*r)[0].ready_port, 49999);
  EXPECT_EQ((*r)[0].ready_timeout_s, kDefaultReadyTimeoutS);
  EXPECT_EQ((*r)[1].ready_port, 1);
  EXPECT_EQ((*r)[1].ready_timeout_s, 600u);
  EXPECT_EQ((*r)[2].ready_port, 0);  // none declared: ready once started
  for (const char* bad : {"0", "65536", "-1", "\"80\"", "80.5", "true"}) {
    std::string e = ErrOf(std::string(R"([{"name":"a","argv":["x"],"ready_port":)") + bad + "}]");
    EXPECT_NE(e.find("[0].ready_port): expected a TCP port, 1 to 65535"), std::string::npos) << e;
  }
  for (const char* bad : {"0", "601", "1.5", "\"9\""}) {
    std::string e = ErrOf(std::string(R"([{"name":"a","argv":["x"],"ready_port":80,)") +
                          R"("ready_timeout_s":)" + bad + "}]");
    EXPECT_NE(e.find("[0].ready_timeout_s): expected seconds, 1 to 600"), std::string::npos) << e;
  }
  EXPECT_NE(
      ErrOf(R"([{"name":"a","argv":["x"],"ready_timeout_s":5}])").find("only with ready_port"),
      std::string::npos);
}

TEST(ServicesLabel, ReadyPollPlanBacksOffAndEndsAtTheTimeout) {
  using std::chrono::milliseconds;
  const ReadyPollPlan plan{milliseconds(1000)};
  EXPECT_EQ(plan.Next(0, milliseconds(0)), milliseconds(1));
  EXPECT_EQ(plan.Next(1, milliseconds(1)), milliseconds(2));
  EXPECT_EQ(plan.Next(4, milliseconds(20)), milliseconds(16));
  EXPECT_EQ(plan.Next(5, milliseconds(40)), milliseconds(20));  // capped
  EXPECT_EQ(plan.Next(1000, milliseconds(500)), milliseconds(20));
  EXPECT_EQ(plan.Next(50, milliseconds(995)), milliseconds(5));  // lands on the deadline
  EXPECT_EQ(plan.Next(50, milliseconds(1000)), std::nullopt);
  EXPECT_EQ(plan.Next(0, milliseconds(2000)), std::nullopt);
  // Simulated: a service that never answers is given up on at the timeout,
  // after a bounded number of attempts.
  milliseconds t{0};
  uint32_t attempts = 0;
  while (auto d = plan.Next(attempts, t)) {
    t += *d;
    ++attempts;
  }
  EXPECT_EQ(t, milliseconds(1000));
  EXPECT_LT(attempts, 60u);
}

TEST(ServicesLabel, ImagesWithoutTheLabelHaveNone) {
  ImageConfig c;
  c.labels["other"] = "x";
  auto r = ServicesOf("img", c);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
  c.labels[kServicesLabel] = R"([{"name":"s","argv":["sleep","9"]}])";
  r = ServicesOf("img", c);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ(ServiceNameOfTag(ServiceTag("s")), "s");
  EXPECT_EQ(ServiceNameOfTag("main"), "");
}

}  // namespace
}  // namespace wb
