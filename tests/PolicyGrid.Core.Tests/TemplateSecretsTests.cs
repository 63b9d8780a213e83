using PolicyGrid.Core.Templates;

namespace PolicyGrid.Core.Tests;

public class TemplateSecretsTests
{
    private static readonly JsonObject Template = J.O("""
        {
          "api_key": {"type": "string", "secret": true},
          "url": {"type": "string"},
          "auth": {"type": "object", "properties": {"user": {"type": "string"}, "password": {"type": "string", "secret": true}}},
          "tokens": {"type": "array", "items": {"type": "string", "secret": true}},
          "upstreams": {"type": "array", "items": {"type": "object", "properties": {"host": {"type": "string"}, "key": {"secret": true}}}}
        }
        """);

    [Fact]
    public void Secret_fields_read_as_stars_nested_ones_too()
    {
        var values = J.O("""
            {"api_key": "k1", "url": "http://x", "auth": {"user": "u", "password": "p"}, "tokens": ["a", "b"],
             "upstreams": [{"host": "h1", "key": "s1"}, {"host": "h2"}], "other": "kept"}
            """);
        var redacted = TemplateSecrets.Redact(Template, values);
        redacted.ToJsonString().ShouldBe(J.O("""
            {"api_key": "***", "url": "http://x", "auth": {"user": "u", "password": "***"}, "tokens": ["***", "***"],
             "upstreams": [{"host": "h1", "key": "***"}, {"host": "h2"}], "other": "kept"}
            """).ToJsonString());
    }

    [Fact]
    public void Redaction_works_on_a_copy()
    {
        var values = J.O("""{"api_key": "k1"}""");
        TemplateSecrets.Redact(Template, values);
        values["api_key"]!.GetValue<string>().ShouldBe("k1");
    }

    [Fact]
    public void Missing_secret_fields_stay_missing() =>
        TemplateSecrets.Redact(Template, J.O("""{"url": "u"}""")).ContainsKey("api_key").ShouldBeFalse();

    [Fact]
    public void A_whole_policy_rule_is_redacted_by_its_two_templates()
    {
        var rule = J.O("""
            {"policy_settings_schema": {"remote_token": {"type": "string", "secret": true}},
             "policy_parameters_schema": {"db_password": {"type": "string", "secret": true}},
             "policy_settings": {"remote_token": "t", "remote_url": "u"},
             "policy_parameters": {"db_password": "p", "remote_token": "not-secret-here"}}
            """);
        var redacted = TemplateSecrets.RedactPolicyRule(rule);
        redacted["policy_settings"]!["remote_token"]!.GetValue<string>().ShouldBe("***");
        redacted["policy_settings"]!["remote_url"]!.GetValue<string>().ShouldBe("u");
        redacted["policy_parameters"]!["db_password"]!.GetValue<string>().ShouldBe("***");
        redacted["policy_parameters"]!["remote_token"]!.GetValue<string>().ShouldBe("not-secret-here");
        rule["policy_settings"]!["remote_token"]!.GetValue<string>().ShouldBe("t");
    }

    [Fact]
    public void A_function_redacts_its_policy_snapshot()
    {
        var function = J.O("""
            {"function_id": "f", "function_policy_data": {"policy_parameters_schema": {"k": {"secret": true}}, "policy_parameters": {"k": "v"}}}
            """);
        TemplateSecrets.RedactFunction(function)["function_policy_data"]!["policy_parameters"]!["k"]!.GetValue<string>().ShouldBe("***");
    }

    [Fact]
    public void Sending_back_the_mask_keeps_the_stored_secret()
    {
        var stored = J.O("""{"api_key": "real", "url": "old", "auth": {"password": "pw"}}""");
        var incoming = J.O("""{"api_key": "***", "url": "new", "auth": {"password": "***"}}""");
        var restored = TemplateSecrets.Restore(Template, incoming, stored);
        restored["api_key"]!.GetValue<string>().ShouldBe("real");
        restored["url"]!.GetValue<string>().ShouldBe("new");
        restored["auth"]!["password"]!.GetValue<string>().ShouldBe("pw");
    }

    [Fact]
    public void Sending_a_new_secret_replaces_it() =>
        TemplateSecrets.Restore(Template, J.O("""{"api_key": "rotated"}"""), J.O("""{"api_key": "real"}"""))["api_key"]!
            .GetValue<string>().ShouldBe("rotated");

    [Fact]
    public void RestorePolicyRule_restores_settings_and_parameters()
    {
        var stored = J.O("""{"policy_settings": {"t": "real-t"}, "policy_parameters": {"p": "real-p"}}""");
        var incoming = J.O("""
            {"policy_settings_schema": {"t": {"secret": true}}, "policy_parameters_schema": {"p": {"secret": true}},
             "policy_settings": {"t": "***"}, "policy_parameters": {"p": "***"}}
            """);
        var restored = TemplateSecrets.RestorePolicyRule(incoming, stored);
        restored["policy_settings"]!["t"]!.GetValue<string>().ShouldBe("real-t");
        restored["policy_parameters"]!["p"]!.GetValue<string>().ShouldBe("real-p");
    }

    [Fact]
    public void HasSecrets_finds_nested_secret_marks()
    {
        TemplateSecrets.HasSecrets(Template).ShouldBeTrue();
        TemplateSecrets.HasSecrets(J.O("""{"a": {"type": "array", "items": {"type": "object", "properties": {"k": {"secret": true}}}}}""")).ShouldBeTrue();
        TemplateSecrets.HasSecrets(J.O("""{"a": {"type": "string", "secret": false}}""")).ShouldBeFalse();
    }
}
