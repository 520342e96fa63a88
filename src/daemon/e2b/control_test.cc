#include "daemon/e2b/control.h"

#include <gtest/gtest.h>

#include "daemon/e2b/route.h"

namespace wb::daemon::e2b {
namespace {

TEST(E2bControlTest, CreateMapsOntoALiveSandbox) {
  auto r =
      ParseCreate(R"({"templateID":"t1","timeout":120,"metadata":{"a":"b"},"envVars":{"K":"V"},)"
                  R"("autoPause":true,"secure":true,"allow_internet_access":false})");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->image.value_or(""), "t1");
  EXPECT_EQ(r->timeout_s.value_or(0), 120u);
  EXPECT_EQ(r->metadata.at("a"), "b");
  EXPECT_EQ(r->env, std::vector<std::string>{"K=V"});
  EXPECT_EQ(r->on_timeout, "pause");
  auto empty = ParseCreate("");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->image.value_or(""), "base");
  EXPECT_FALSE(empty->timeout_s.has_value());
}

TEST(E2bControlTest, NetworkFieldsMapOntoWarmboxsPolicy) {
  // Nothing said: the daemon's default.
  auto plain = ParseCreate("{}");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->network.mode, NetworkMode::kNone);
  auto dflt = ParseCreate("{}", NetworkMode::kEgress);
  ASSERT_TRUE(dflt.ok());
  EXPECT_EQ(dflt->network.mode, NetworkMode::kEgress);
  EXPECT_TRUE(dflt->network.allow_out.empty());
  // The body the reference observed: everything denied but 1.1.1.1.
  auto only = ParseCreate(
      R"({"allow_internet_access":false,"network":{"allowOut":["1.1.1.1"],"denyOut":["0.0.0.0/0"],"allowPublicTraffic":false}})");
  ASSERT_TRUE(only.ok()) << only.error().ToString();
  EXPECT_EQ(only->network.mode, NetworkMode::kEgress);
  EXPECT_EQ(only->network.allow_out, std::vector<std::string>{"1.1.1.1"});
  EXPECT_TRUE(only->network.deny_out.empty());
  auto off = ParseCreate(R"({"allow_internet_access":false})", NetworkMode::kEgress);
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->network.mode, NetworkMode::kNone);
  auto on = ParseCreate(R"({"allow_internet_access":true})");
  ASSERT_TRUE(on.ok());
  EXPECT_EQ(on->network.mode, NetworkMode::kEgress);
  auto deny = ParseCreate(R"({"network":{"denyOut":["198.51.100.0/24","bad.test"]}})");
  ASSERT_TRUE(deny.ok());
  EXPECT_EQ(deny->network.mode, NetworkMode::kEgress);
  EXPECT_EQ(deny->network.deny_out, (std::vector<std::string>{"198.51.100.0/24", "bad.test"}));
  auto update = ParseNetworkUpdate(R"({"allowOut":["a.test"],"denyOut":["0.0.0.0/0"]})");
  ASSERT_TRUE(update.ok());
  auto spec = E2bNetworkSpec(*update, NetworkMode::kEgress);
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->allow_out, std::vector<std::string>{"a.test"});
}

TEST(E2bControlTest, NetworkFieldsWarmboxCannotHonourAreRefusedByName) {
  for (const char* field : {"egressProxy", "maskRequestHost", "rules", "httpsPorts",
                            "allowPublicTraffic", "allowOut"}) {
    std::string body;
    if (std::string(field) == "egressProxy")
      body = R"({"network":{"egressProxy":{"address":"p:1"}}})";
    if (std::string(field) == "maskRequestHost") body = R"({"network":{"maskRequestHost":"x"}})";
    if (std::string(field) == "rules") body = R"({"network":{"rules":{"a.test":[{}]}}})";
    if (std::string(field) == "httpsPorts") body = R"({"network":{"httpsPorts":[3000]}})";
    if (std::string(field) == "allowPublicTraffic")
      body = R"({"network":{"allowPublicTraffic":true}})";
    // E2B's allow beats a partial deny; warmbox's deny wins: refused.
    if (std::string(field) == "allowOut")
      body = R"({"network":{"allowOut":["198.51.100.7"],"denyOut":["198.51.100.0/24"]}})";
    auto r = ParseCreate(body);
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().ToString().find(std::string("network.") + field), std::string::npos)
        << r.error().ToString();
  }
  auto bad = ParseCreate(R"({"network":{"allowOut":["10.0.0.1/8"],"denyOut":["0.0.0.0/0"]}})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find("network.allowOut"), std::string::npos);
}

TEST(E2bControlTest, CreateRefusesWhatItCannotDo) {
  auto mcp = ParseCreate(R"({"mcp":{"x":{}}})");
  ASSERT_FALSE(mcp.ok());
  EXPECT_NE(mcp.error().ToString().find("mcp"), std::string::npos);
  auto unknown = ParseCreate(R"({"templateId":"x"})");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().ToString().find("templateId"), std::string::npos);
  EXPECT_FALSE(ParseCreate(R"({"metadata":{"a":1}})").ok());
  EXPECT_FALSE(ParseCreate(R"({"timeout":-1})").ok());
  EXPECT_FALSE(ParseCreate("[]").ok());
  EXPECT_EQ(ParseCreate("{").error().code, ErrorCode::kInvalidArgument);
}

TEST(E2bControlTest, ListQueryDecodesTheSdksMetadata) {
  // The SDK's encoding of {'k y': 'a b&c=d'}, as the query parser hands it over
  // (decoded once).
  auto q = ParseListQuery({{"metadata", "k%2520y=a%2520b%2526c%253Dd"},
                           {"state", "running"},
                           {"limit", "2"},
                           {"order", "asc"}});
  ASSERT_TRUE(q.ok()) << q.error().ToString();
  EXPECT_EQ(q->metadata.at("k y"), "a b&c=d");
  EXPECT_TRUE(q->running);
  EXPECT_FALSE(q->paused);
  EXPECT_EQ(q->limit, 2u);
  EXPECT_TRUE(q->ascending);
  EXPECT_FALSE(ParseListQuery({{"state", "dead"}}).ok());
  EXPECT_FALSE(ParseListQuery({{"limit", "0"}}).ok());
  EXPECT_FALSE(ParseListQuery({{"order", "up"}}).ok());
}

TEST(E2bControlTest, PagesFollowTheirTokens) {
  std::vector<LiveInfo> all;
  for (int i = 0; i < 5; ++i) {
    LiveInfo li;
    li.id = std::string(31, '0') + std::to_string(i);
    li.created_ms = 1000 + i;
    li.metadata["n"] = std::to_string(i);
    all.push_back(li);
  }
  all[4].state = LiveState::kDead;  // never listed
  ListQuery q;
  q.limit = 2;
  std::vector<std::string> seen;
  for (int pages = 0; pages < 10; ++pages) {
    auto [page, next] = ListPage(all, q);
    for (const auto& i : page) seen.push_back(i.metadata.at("n"));
    if (next.empty()) break;
    q.next_token = next;
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"3", "2", "1", "0"}));  // newest first
  ListQuery filtered;
  filtered.metadata["n"] = "2";
  auto [page, next] = ListPage(all, filtered);
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].metadata.at("n"), "2");
  EXPECT_EQ(next, "");
}

TEST(E2bControlTest, ErrorsCarryTheCodeTheSdkReads) {
  EXPECT_EQ(E2bErrorJson(404, "gone"), R"({"code":404,"message":"gone"})");
  EXPECT_EQ(E2bStatusForCode(ErrorCode::kNotFound), 404u);
  EXPECT_EQ(E2bStatusForCode(ErrorCode::kFailedPrecondition), 409u);
  EXPECT_EQ(E2bStatusForCode(ErrorCode::kBusy), 429u);
}

TEST(E2bRouteTest, HeadersPickThePlane) {
  auto control = Classify(std::nullopt, std::nullopt, "/v2/sandboxes");
  ASSERT_TRUE(control.ok());
  EXPECT_EQ(control->plane, Plane::kControl);
  EXPECT_EQ(Classify(std::nullopt, std::nullopt, "/sandboxes/x/pause")->plane, Plane::kControl);
  EXPECT_EQ(Classify(std::nullopt, std::nullopt, "/v1/sandboxes")->plane, Plane::kNone);
  EXPECT_EQ(Classify(std::nullopt, std::nullopt, "/sandboxesx")->plane, Plane::kNone);
  auto envd = Classify("abc", "49983", "/files");
  ASSERT_TRUE(envd.ok());
  EXPECT_EQ(envd->plane, Plane::kEnvd);
  EXPECT_EQ(envd->sandbox, "abc");
  EXPECT_EQ(Classify("abc", std::nullopt, "/health")->plane, Plane::kEnvd);
  auto port = Classify("abc", "8080", "/");
  ASSERT_TRUE(port.ok());
  EXPECT_EQ(port->plane, Plane::kPort);
  EXPECT_EQ(port->port, 8080);
  auto bad = Classify("abc", "99999", "/");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find("E2b-Sandbox-Port"), std::string::npos);
}

}  // namespace
}  // namespace wb::daemon::e2b
