#include "oci/auth.h"

#include <gtest/gtest.h>

#include "tests/assert_ok.h"

namespace wb::oci {
namespace {

TEST(AuthTest, ParsesBearerChallenge) {
  auto c = ParseChallenge(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/python:pull")");
  ASSERT_OK(c);
  EXPECT_EQ(c->scheme, "bearer");
  EXPECT_EQ(c->params["realm"], "https://auth.docker.io/token");
  EXPECT_EQ(c->params["service"], "registry.docker.io");
  EXPECT_EQ(c->params["scope"], "repository:library/python:pull");
  auto url = TokenUrl(*c, "ignored/repo");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(*url,
            "https://auth.docker.io/"
            "token?service=registry.docker.io&scope=repository%3Alibrary%2Fpython%3Apull");
}

TEST(AuthTest, ChallengeVariants) {
  auto basic = ParseChallenge(R"(Basic realm="Registry Realm")");
  ASSERT_TRUE(basic.ok());
  EXPECT_EQ(basic->scheme, "basic");
  EXPECT_EQ(basic->params["realm"], "Registry Realm");
  // Unquoted values, odd spacing, escapes; no scope -> repository:REPO:pull.
  auto c = ParseChallenge(R"(bearer  Realm=http://127.0.0.1:9/t?x=1 , service="a\"b")");
  ASSERT_OK(c);
  EXPECT_EQ(c->params["realm"], "http://127.0.0.1:9/t?x=1");
  EXPECT_EQ(c->params["service"], "a\"b");
  EXPECT_EQ(TokenUrl(*c, "team/img").value(),
            "http://127.0.0.1:9/t?x=1&service=a%22b&scope=repository%3Ateam%2Fimg%3Apull");
  EXPECT_FALSE(ParseChallenge("Negotiate abc").ok());
  EXPECT_FALSE(ParseChallenge("Bearer service=\"x\"").ok());
  EXPECT_FALSE(ParseChallenge("Bearer realm=\"unterminated").ok());
  Challenge file;
  file.scheme = "bearer";
  file.params["realm"] = "file:///etc/passwd";
  EXPECT_FALSE(TokenUrl(file, "a").ok());
}

TEST(AuthTest, TokenResponse) {
  EXPECT_EQ(ParseTokenResponse(R"({"token":"abc","expires_in":300})").value(), "abc");
  EXPECT_EQ(ParseTokenResponse(R"({"access_token":"xyz"})").value(), "xyz");
  EXPECT_FALSE(ParseTokenResponse(R"({"token":""})").ok());
  EXPECT_FALSE(ParseTokenResponse("<html>").ok());
}

TEST(AuthTest, DockerConfigCredentials) {
  std::string cfg = R"({"auths":{
    "https://index.docker.io/v1/":{"auth":")" +
                    Base64Encode("hubuser:hub:pass") + R"("},
    "localhost:5000":{"username":"u","password":"p"},
    "other.io":{}}})";
  auto hub = CredentialsFromDockerConfig(cfg, "docker.io");
  ASSERT_TRUE(hub.ok());
  ASSERT_TRUE(hub->has_value());
  EXPECT_EQ((*hub)->username, "hubuser");
  EXPECT_EQ((*hub)->password, "hub:pass");
  auto local = CredentialsFromDockerConfig(cfg, "localhost:5000");
  ASSERT_TRUE(local.ok() && local->has_value());
  EXPECT_EQ((*local)->BasicHeader(), "Basic " + Base64Encode("u:p"));
  auto none = CredentialsFromDockerConfig(cfg, "ghcr.io");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_FALSE(CredentialsFromDockerConfig(cfg, "other.io").value().has_value());
  EXPECT_FALSE(CredentialsFromDockerConfig("nope", "x").ok());
  EXPECT_FALSE(CredentialsFromDockerConfig(R"({"auths":{"x":{"auth":"bm9jb2xvbg=="}}})", "x")
                   .ok());  // "nocolon"
}

TEST(AuthTest, Base64RoundTrip) {
  for (const std::string& s :
       std::vector<std::string>{"", "a", "ab", "abc", "abcd", "user:pässwörd\x01"}) {
    EXPECT_EQ(Base64Decode(Base64Encode(s)).value(), s);
  }
  EXPECT_EQ(Base64Encode("user:pass"), "dXNlcjpwYXNz");
  EXPECT_FALSE(Base64Decode("ab$c").ok());
}

}  // namespace
}  // namespace wb::oci
