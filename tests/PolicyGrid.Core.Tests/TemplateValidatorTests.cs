using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Templates;

namespace PolicyGrid.Core.Tests;

public class TemplateValidatorTests
{
    private static readonly JsonObject AllowlistTemplate = J.O("""
        {
          "local_allowlist": {"type": "array", "items": {"type": "string", "pattern": "^\\d{1,3}(\\.\\d{1,3}){3}$"}, "max_length": 3},
          "mode": {"type": "string", "choices": ["strict", "lenient"], "required": true},
          "threshold": {"type": "number", "min": 0, "max": 1},
          "retries": {"type": "integer", "min": 0},
          "enabled": {"type": "boolean"},
          "limits": {"type": "object", "properties": {"rate": {"type": "integer", "required": true}, "label": {"type": "string", "max_length": 5}}},
          "anything": {"type": "any"}
        }
        """);

    private static IReadOnlyList<FieldError> Check(string value) => TemplateValidator.Validate(AllowlistTemplate, J.N(value), "policy_parameters");

    [Theory]
    [InlineData("number")]
    [InlineData("integer")]
    public void A_number_past_what_a_double_holds_is_out_of_range_not_no_number(string type)
    {
        var huge = "1" + new string('0', 400); // Python's 10**400
        var template = J.O($$$"""{"total": {"type": "{{{type}}}"}}""");

        var errors = TemplateValidator.Validate(template, J.N($$$"""{"total": {{{huge}}}}"""), "policy_output");
        var negative = TemplateValidator.Validate(template, J.N($$$"""{"total": -{{{huge}}}}"""), "policy_output");

        var error = errors.ShouldHaveSingleItem();
        error.Path.ShouldBe("policy_output.total");
        error.Message.ShouldContain("is out of range");
        error.Message.ShouldContain("±1.7976931348623157e308");
        error.Message.ShouldContain("(401 characters)");
        error.Message.ShouldNotContain("not a number");
        negative.ShouldHaveSingleItem().Message.ShouldContain("is out of range");
    }

    [Fact]
    public void A_template_whose_keys_all_apply_has_no_inert_keys() =>
        TemplateValidator.InertKeys(AllowlistTemplate, "policy_parameters_schema").ShouldBeEmpty();

    [Fact]
    public void Inert_keys_are_found_at_any_depth_with_why_a_keyword_checks_nothing()
    {
        var template = J.O("""
            {
              "port": {"type": "integer", "pattern": "^8", "max_length": 2, "requird": true, "default": 80},
              "name": {"type": "string", "min": 1, "choices": [1, 2]},
              "hosts": {"type": "array", "items": {"type": "boolean", "maxLength": 3}},
              "limits": {"type": "object", "properties": {"rate": {"type": "string", "max": 10}}},
              "free": {"pattern": "^a", "min": 0, "max_length": 1}
            }
            """);

        var inert = TemplateValidator.InertKeys(template, "policy_input_schema")
            .Select(k => $"{k.Path}.{k.Key}: {k.Reason ?? "no keyword"}").ToList();

        inert.ShouldBe([
            "policy_input_schema.port.pattern: checks nothing: pattern is only checked on strings, and the type is \"integer\"",
            "policy_input_schema.port.max_length: checks nothing: max_length is only checked on strings and arrays, and the type is \"integer\"",
            "policy_input_schema.port.requird: no keyword",
            "policy_input_schema.port.default: no keyword",
            "policy_input_schema.name.min: checks nothing: min is only checked on numbers, and the type is \"string\"",
            "policy_input_schema.name.choices: refuses every value: no choice is a string, as the type \"string\" asks",
            "policy_input_schema.hosts.items.maxLength: no keyword",
            "policy_input_schema.limits.properties.rate.max: checks nothing: max is only checked on numbers, and the type is \"string\"",
        ]);
    }

    [Fact]
    public void A_valid_value_has_no_errors() =>
        Check("""{"local_allowlist": ["10.0.0.1"], "mode": "strict", "threshold": 0.5, "retries": 3, "enabled": true, "limits": {"rate": 5, "label": "ab"}, "anything": [1, "x"]}""")
            .ShouldBeEmpty();

    [Theory]
    [InlineData("""{"mode": "strict", "threshold": 1e30}""", "policy_parameters.threshold: 1e30 is greater than the maximum 1")]
    [InlineData("""{"mode": "strict", "threshold": -1e30}""", "policy_parameters.threshold: -1e30 is less than the minimum 0")]
    [InlineData("""{"mode": "strict", "retries": 1.5e40}""", null)]
    [InlineData("""{"mode": "strict", "retries": -1.5e40}""", "policy_parameters.retries: -1.5e40 is less than the minimum 0")]
    public void Numbers_beyond_decimal_range_are_numbers_and_held_to_min_and_max(string value, string? error)
    {
        // JSON and Python both carry 1e30; it must be neither refused as "not a number" nor waved past a maximum.
        var errors = Check(value);
        if (error is null) errors.ShouldBeEmpty();
        else errors.ShouldHaveSingleItem().ToString().ShouldBe(error);
    }

    [Fact]
    public void A_number_beyond_decimal_range_with_a_fraction_is_not_an_integer_and_one_without_is()
    {
        var template = J.O("""{"n": {"type": "integer"}}""");
        TemplateValidator.Validate(template, J.N("""{"n": 1e30}"""), "input_data").ShouldBeEmpty();
        TemplateValidator.Validate(template, J.N("""{"n": 12.5}"""), "input_data").ShouldHaveSingleItem().Message.ShouldBe("must be an integer, not a number");
    }

    [Theory]
    [InlineData("1e-30", false)]
    [InlineData("-1e-13", false)]
    [InlineData("1.0000000000000000000000000001", false)]
    [InlineData("0", true)]
    [InlineData("0.0", true)]
    [InlineData("-0", true)]
    [InlineData("1e-400", true)] // as a double it is 0, as Python reads it (0.0)
    [InlineData("3.0", true)]
    public void A_tiny_number_is_no_integer_though_decimal_rounds_it_to_zero(string number, bool integer)
    {
        var errors = TemplateValidator.Validate(J.O("""{"n": {"type": "integer"}}"""), J.N($$"""{"n": {{number}}}"""), "input_data");
        if (integer) errors.ShouldBeEmpty();
        else errors.ShouldHaveSingleItem().Message.ShouldBe("must be an integer, not a number");
    }

    [Fact]
    public void Numbers_built_in_code_are_numbers_whatever_their_dotnet_type()
    {
        var template = J.O("""{"n": {"type": "number", "min": 0, "max": 100}, "i": {"type": "integer"}}""");
        foreach (var n in new JsonNode[] { JsonValue.Create(60), JsonValue.Create(60L), JsonValue.Create(60m), JsonValue.Create(60.5), JsonValue.Create(60.5f), JsonValue.Create((short)60) })
            TemplateValidator.Validate(template, new JsonObject { ["n"] = n.DeepClone(), ["i"] = JsonValue.Create(7) }, "p").ShouldBeEmpty();
        TemplateValidator.Validate(template, new JsonObject { ["n"] = JsonValue.Create(600) }, "p").ShouldHaveSingleItem().Message.ShouldBe("600 is greater than the maximum 100");
        TemplateValidator.CheckTemplate(new JsonObject { ["n"] = new JsonObject { ["type"] = "number", ["max"] = JsonValue.Create(5) } }, "t").ShouldBeEmpty();
    }

    [Fact]
    public void A_template_may_bound_a_number_beyond_decimal_range()
    {
        var template = J.O("""{"n": {"type": "number", "min": -1e300, "max": 1e300}}""");
        TemplateValidator.CheckTemplate(template, "policy_input_schema").ShouldBeEmpty();
        TemplateValidator.Validate(template, J.N("""{"n": 1e301}"""), "input_data").ShouldHaveSingleItem().Message.ShouldBe("1e301 is greater than the maximum 1e300");
        TemplateValidator.CheckTemplate(J.O("""{"n": {"type": "number", "min": 1e300, "max": 1}}"""), "t").ShouldHaveSingleItem().ToString().ShouldBe("t.n.min: 1e300 is greater than max 1");
        TemplateValidator.CheckTemplate(J.O("""{"s": {"type": "string", "max_length": 1e-30}}"""), "t").ShouldHaveSingleItem().ToString().ShouldContain("a non-negative integer");
        // 1e30 is a non-negative integer (no decimal holds it): accepted, and no value is that long.
        var huge = J.O("""{"s": {"type": "string", "max_length": 1e30}, "a": {"type": "array", "max_length": 1e300}}""");
        TemplateValidator.CheckTemplate(huge, "t").ShouldBeEmpty();
        TemplateValidator.Validate(huge, J.N("""{"s": "abc", "a": [1, 2]}"""), "input_data").ShouldBeEmpty();
        TemplateValidator.CheckTemplate(J.O("""{"s": {"type": "string", "max_length": -1e30}}"""), "t").ShouldHaveSingleItem().ToString().ShouldContain("a non-negative integer");
    }

    [Fact]
    public void Names_the_array_element_that_does_not_match_the_pattern()
    {
        var error = Check("""{"mode": "strict", "local_allowlist": ["10.0.0.1", "10.0.0.2", "not-an-ip"]}""").ShouldHaveSingleItem();
        error.ToString().ShouldBe(@"policy_parameters.local_allowlist[2]: does not match ^\d{1,3}(\.\d{1,3}){3}$");
    }

    [Theory]
    [InlineData("10.0.0.1\n")]
    [InlineData("\u0661\u0660.\u0660.\u0660.\u0661")] // Arabic-Indic digits
    [InlineData("10.0.0.1\r")]
    public void Patterns_read_as_json_schema_does_so_an_anchored_pattern_holds(string ip)
    {
        var value = new JsonObject { ["mode"] = "strict", ["local_allowlist"] = new JsonArray(ip) };
        var error = TemplateValidator.Validate(AllowlistTemplate, value, "policy_parameters").ShouldHaveSingleItem();
        error.ToString().ShouldBe(@"policy_parameters.local_allowlist[0]: does not match ^\d{1,3}(\.\d{1,3}){3}$");
    }

    [Theory]
    [InlineData(@"^a.b$", "a-b", true)]
    [InlineData(@"^a.b$", "a\rb", false)] // ECMA-262's '.' stops at every line terminator
    [InlineData(@"^a.b$", "a\u2028b", false)]
    [InlineData(@"^a.b$", "a-b\n", false)]
    [InlineData(@"^\w+$", "abc_9", true)]
    [InlineData(@"^\w+$", "\u00e9t\u00e9", false)]
    [InlineData(@"^[$.]+$", "$.", true)] // '$' and '.' in a class are characters
    [InlineData(@"^[$.]+$", "$x", false)]
    [InlineData(@"^a\$$", "a$", true)]
    [InlineData(@"^a\$$", "a$\n", false)]
    [InlineData(@"^a\.b$", "a.b", true)]
    [InlineData(@"^a\.b$", "axb", false)]
    [InlineData(@"^[^]]$", "x]", true)] // ECMAScript's [^] is any character; the ']' after it is a character
    [InlineData(@"^[^]]$", "x]\n", false)]
    [InlineData(@"^[]$]x$", "$x", true)]
    [InlineData(@"^[a-z-[aeiou]]$$", "b", true)]
    [InlineData(@"^[a-z-[aeiou]]$", "b\n", false)]
    [InlineData(@"^(?#a comment with $ and .)x$", "x\n", false)]
    [InlineData(@"(?m)^a$", "a\nb", true)] // .NET inline options asked for .NET's meaning and keep it
    [InlineData(@"(?i)^a$", "A\n", false)]
    [InlineData(@"^(a|b)$|^c$", "c\n", false)]
    [InlineData("^https?://", "https://example.com", true)]
    public void A_pattern_matches_as_ecma_262_reads_it(string pattern, string value, bool matches) =>
        TemplateValidator.Compile(pattern).IsMatch(value).ShouldBe(matches);

    [Theory]
    [InlineData(@"a$")]
    [InlineData(@"[a-\]]")]
    [InlineData(@"\\$")]
    public void Translation_keeps_what_it_does_not_touch_and_rewrites_only_anchors_and_dots(string pattern)
    {
        var translated = SchemaPattern.Translate(pattern);
        translated.Replace(@"\z", "$", StringComparison.Ordinal).ShouldBe(pattern);
    }

    [Fact]
    public void A_pattern_that_does_not_compile_is_reported_as_written_at_the_spec_path()
    {
        var error = TemplateValidator.CheckTemplate(J.O("""{"ip": {"type": "string", "pattern": "^(\\d+$"}}"""), "policy_input_schema").ShouldHaveSingleItem();
        error.Path.ShouldBe("policy_input_schema.ip.pattern");
        error.Message.ShouldContain(@"'^(\d+$' is not a valid regular expression");
        error.Message.ShouldContain(@"Invalid pattern '^(\d+$'");
        error.Message.ShouldNotContain(@"\z");
    }

    [Fact]
    public void Errors_about_a_secret_field_never_show_its_value()
    {
        var template = J.O("""
            {
              "api_key": {"type": "string", "secret": true, "choices": ["a"]},
              "pin": {"type": "integer", "secret": true, "min": 1000, "max": 9999},
              "keys": {"type": "array", "secret": true, "items": {"type": "string", "choices": ["x"]}},
              "nested": {"type": "object", "secret": true, "properties": {"code": {"type": "integer", "max": 1}}}
            }
            """);
        var errors = TemplateValidator.Validate(template, J.N("""{"api_key": "SUPERSECRET123", "pin": 123456, "keys": ["KEYSECRET"], "nested": {"code": 424242}}"""), "policy_settings");
        errors.Select(e => e.Path).ShouldBe(["policy_settings.api_key", "policy_settings.pin", "policy_settings.keys[0]", "policy_settings.nested.code"], ignoreOrder: true);
        var text = string.Join("\n", errors);
        foreach (var secret in new[] { "SUPERSECRET123", "123456", "KEYSECRET", "424242" }) text.ShouldNotContain(secret);
        text.ShouldContain("the secret value is not one of [\"a\"]");
    }

    [Fact]
    public void Required_fields_must_be_present_and_not_null()
    {
        Check("{}").ShouldHaveSingleItem().ToString().ShouldBe("policy_parameters.mode: is required");
        Check("""{"mode": null}""").ShouldHaveSingleItem().Path.ShouldBe("policy_parameters.mode");
    }

    [Fact]
    public void Optional_fields_may_be_missing_or_null() => Check("""{"mode": "strict", "threshold": null}""").ShouldBeEmpty();

    [Theory]
    [InlineData("""{"mode": 5}""", "policy_parameters.mode", "must be a string, not a number")]
    [InlineData("""{"mode": "strict", "threshold": "high"}""", "policy_parameters.threshold", "must be a number, not a string")]
    [InlineData("""{"mode": "strict", "retries": 1.5}""", "policy_parameters.retries", "must be an integer")]
    [InlineData("""{"mode": "strict", "enabled": "yes"}""", "policy_parameters.enabled", "must be a boolean, not a string")]
    [InlineData("""{"mode": "strict", "limits": [1]}""", "policy_parameters.limits", "must be an object, not an array")]
    [InlineData("""{"mode": "strict", "local_allowlist": "10.0.0.1"}""", "policy_parameters.local_allowlist", "must be an array, not a string")]
    [InlineData("""{"mode": "lax"}""", "policy_parameters.mode", "is not one of")]
    [InlineData("""{"mode": "strict", "threshold": -0.1}""", "policy_parameters.threshold", "less than the minimum 0")]
    [InlineData("""{"mode": "strict", "threshold": 1.5}""", "policy_parameters.threshold", "greater than the maximum 1")]
    [InlineData("""{"mode": "strict", "retries": -1}""", "policy_parameters.retries", "less than the minimum 0")]
    [InlineData("""{"mode": "strict", "local_allowlist": ["1.1.1.1","1.1.1.2","1.1.1.3","1.1.1.4"]}""", "policy_parameters.local_allowlist", "has 4 items, more than max_length 3")]
    [InlineData("""{"mode": "strict", "limits": {"rate": 1, "label": "toolong"}}""", "policy_parameters.limits.label", "is 7 characters long, more than max_length 5")]
    [InlineData("""{"mode": "strict", "limits": {}}""", "policy_parameters.limits.rate", "is required")]
    [InlineData("""{"mode": "strict", "limits": {"rate": "x"}}""", "policy_parameters.limits.rate", "must be an integer, not a string")]
    [InlineData("""{"mode": "strict", "local_allowlist": [5]}""", "policy_parameters.local_allowlist[0]", "must be a string, not a number")]
    [InlineData("""{"mode": "strict", "local_allowlist": [null]}""", "policy_parameters.local_allowlist[0]", "must be a string, not null")]
    public void Each_rule_names_the_path_and_the_problem(string value, string path, string message)
    {
        var error = Check(value).ShouldHaveSingleItem();
        error.Path.ShouldBe(path);
        error.Message.ShouldContain(message);
    }

    [Fact]
    public void Reports_every_violation_at_once()
    {
        var errors = Check("""{"threshold": 7, "retries": "x", "local_allowlist": ["a", "b"]}""");
        errors.Paths().ShouldBe(
            ["policy_parameters.local_allowlist[0]", "policy_parameters.local_allowlist[1]", "policy_parameters.mode",
             "policy_parameters.threshold", "policy_parameters.retries"], ignoreOrder: true);
    }

    [Fact]
    public void Pattern_is_searched_not_anchored()
    {
        var template = J.O("""{"host": {"type": "string", "pattern": "example"}}""");
        TemplateValidator.Validate(template, J.O("""{"host": "api.example.com"}"""), "s").ShouldBeEmpty();
        TemplateValidator.Validate(template, J.O("""{"host": "other.org"}"""), "s").ShouldHaveSingleItem().Message.ShouldBe("does not match example");
    }

    [Fact]
    public void Unknown_extra_fields_in_a_value_are_allowed() =>
        Check("""{"mode": "strict", "extra": {"deep": [1, 2]}}""").ShouldBeEmpty();

    [Fact]
    public void Integer_accepts_whole_numbers_written_with_a_fraction() =>
        Check("""{"mode": "strict", "retries": 2.0}""").ShouldBeEmpty();

    [Fact]
    public void Choices_compare_numbers_by_value()
    {
        var template = J.O("""{"level": {"type": "number", "choices": [1, 2.5]}}""");
        TemplateValidator.Validate(template, J.O("""{"level": 1.0}"""), "p").ShouldBeEmpty();
        TemplateValidator.Validate(template, J.O("""{"level": 3}"""), "p").ShouldHaveSingleItem().Message.ShouldBe("3 is not one of [1,2.5]");
    }

    [Fact]
    public void Items_may_be_objects_with_their_own_properties()
    {
        var template = J.O("""{"rules": {"type": "array", "items": {"type": "object", "properties": {"cidr": {"type": "string", "required": true}}}}}""");
        var error = TemplateValidator.Validate(template, J.O("""{"rules": [{"cidr": "10.0.0.0/8"}, {"note": "x"}]}"""), "policy_settings").ShouldHaveSingleItem();
        error.ToString().ShouldBe("policy_settings.rules[1].cidr: is required");
    }

    [Fact]
    public void An_empty_template_accepts_anything()
    {
        TemplateValidator.Validate([], J.N("[1, 2]"), "input_data").ShouldBeEmpty();
        TemplateValidator.Validate([], null, "input_data").ShouldBeEmpty();
    }

    [Fact]
    public void A_non_object_value_against_a_template_is_named_by_the_path() =>
        TemplateValidator.Validate(AllowlistTemplate, J.N("[1]"), "input_data").ShouldHaveSingleItem()
            .ToString().ShouldBe("input_data: must be an object, not an array");

    [Fact]
    public void A_missing_value_only_fails_required_fields() =>
        TemplateValidator.Validate(AllowlistTemplate, null, "policy_parameters").ShouldHaveSingleItem().Path.ShouldBe("policy_parameters.mode");

    [Fact]
    public void An_empty_path_names_fields_bare() =>
        TemplateValidator.Validate(AllowlistTemplate, J.O("{}"), "").ShouldHaveSingleItem().Path.ShouldBe("mode");

    [Fact]
    public void A_type_less_spec_means_any()
    {
        var template = J.O("""{"x": {"required": true}}""");
        TemplateValidator.Validate(template, J.O("""{"x": [1]}"""), "p").ShouldBeEmpty();
        TemplateValidator.Validate(template, J.O("{}"), "p").ShouldHaveSingleItem().Message.ShouldBe("is required");
    }

    [Fact]
    public void A_bad_regex_met_while_validating_is_reported_not_thrown()
    {
        var template = J.O("""{"x": {"type": "string", "pattern": "(unclosed"}}""");
        TemplateValidator.Validate(template, J.O("""{"x": "a"}"""), "p").ShouldHaveSingleItem().Message.ShouldContain("not a valid regular expression");
    }

    [Fact]
    public void A_catastrophic_pattern_times_out_as_an_error()
    {
        var template = J.O("""{"x": {"type": "string", "pattern": "^(a+)+$"}}""");
        var value = new JsonObject { ["x"] = new string('a', 40) + "!" };
        TemplateValidator.Validate(template, value, "p").ShouldHaveSingleItem().Message.ShouldContain("took too long");
    }

    [Fact]
    public void Ensure_throws_a_validation_400_listing_every_field()
    {
        var e = J.Rejects(() => TemplateValidator.Ensure(AllowlistTemplate, J.O("""{"threshold": 9}"""), "policy_parameters"));
        e.Code.ShouldBe(ErrorCodes.ValidationFailed);
        e.Paths().ShouldBe(["policy_parameters.mode", "policy_parameters.threshold"], ignoreOrder: true);
        e.Message.ShouldContain("policy_parameters.threshold: 9 is greater than the maximum 1");
    }

    private static readonly JsonObject OrderTemplate = J.O("""
        {
          "name": {"type": "string", "required": true, "max_length": 4},
          "items": {"type": "array", "max_length": 2, "items": {"type": "object", "properties": {
            "name": {"type": "string", "required": true, "pattern": "^[a-z]+$"},
            "size": {"type": "integer", "min": 1, "max": 9}}}},
          "owner": {"type": "object", "required": true, "properties": {
            "id": {"type": "string", "required": true},
            "tags": {"type": "array", "items": {"type": "string", "choices": ["a", "b"]}}}},
          "token": {"type": "string", "secret": true, "choices": ["s3cret-A"], "max_length": 3}
        }
        """);

    [Fact]
    public void Several_errors_come_in_template_order_with_full_paths_into_arrays_and_objects()
    {
        var value = J.N("""
            {"token": "LEAKED-VALUE", "owner": {"tags": ["a", "c", null]}, "name": "toolong",
             "items": [{"name": "ok"}, {"size": 0}, {"name": "Bad1", "size": 10}]}
            """);
        TemplateValidator.Validate(OrderTemplate, value, "input_data").Select(e => e.ToString()).ShouldBe(
        [
            "input_data.name: is 7 characters long, more than max_length 4",
            "input_data.items: has 3 items, more than max_length 2",
            "input_data.items[1].name: is required",
            "input_data.items[1].size: 0 is less than the minimum 1",
            "input_data.items[2].name: does not match ^[a-z]+$",
            "input_data.items[2].size: 10 is greater than the maximum 9",
            "input_data.owner.id: is required",
            "input_data.owner.tags[1]: \"c\" is not one of [\"a\",\"b\"]",
            "input_data.owner.tags[2]: must be a string, not null",
            "input_data.token: the secret value is not one of [\"s3cret-A\"]",
            "input_data.token: is 12 characters long, more than max_length 3",
        ]);
    }

    [Fact]
    public void A_missing_nested_object_and_a_missing_value_fail_only_their_required_fields()
    {
        TemplateValidator.Validate(OrderTemplate, J.N("""{"name": "ab", "owner": {}}"""), "input_data").Select(e => e.ToString())
            .ShouldBe(["input_data.owner.id: is required"]);
        TemplateValidator.Validate(OrderTemplate, null, "input_data").Select(e => e.ToString())
            .ShouldBe(["input_data.name: is required", "input_data.owner: is required"]);
    }

    [Fact]
    public void Values_built_in_code_and_values_parsed_from_a_body_are_judged_alike()
    {
        var template = J.O("""
            {"ip": {"type": "string", "pattern": "^\\d{1,3}(\\.\\d{1,3}){3}$"},
             "label": {"type": "string", "max_length": 3, "choices": ["é", "ab", "😀", "a\\b"]}}
            """);
        string[] Errors(JsonNode? value) => [.. TemplateValidator.Validate(template, value, "input_data").Select(e => e.ToString())];
        // Each value built in code, parsed from raw UTF-8 and parsed from escapes.
        JsonNode?[] valid =
        [
            new JsonObject { ["ip"] = "10.0.0.1", ["label"] = "é" }, J.N("""{"ip": "10.0.0.1", "label": "é"}"""), J.N("""{"ip": "10.0.0.1", "label": "\u00e9"}"""),
            new JsonObject { ["ip"] = "1.2.3.4", ["label"] = "😀" }, J.N("""{"ip": "1.2.3.4", "label": "😀"}"""), J.N("""{"ip": "1.2.3.4", "label": "\ud83d\ude00"}"""),
            new JsonObject { ["label"] = "a\\b" }, J.N("""{"label": "a\\b"}"""),
        ];
        foreach (var value in valid) Errors(value).ShouldBeEmpty();
        JsonNode?[] invalid = [new JsonObject { ["ip"] = "10.0.0.1\n", ["label"] = "éééé" }, J.N("""{"ip": "10.0.0.1\n", "label": "éééé"}""")];
        foreach (var value in invalid)
            Errors(value).ShouldBe(
            [
                @"input_data.ip: does not match ^\d{1,3}(\.\d{1,3}){3}$",
                "input_data.label: \"\\u00E9\\u00E9\\u00E9\\u00E9\" is not one of [\"\\u00E9\",\"ab\",\"\\uD83D\\uDE00\",\"a\\\\b\"]",
                "input_data.label: is 4 characters long, more than max_length 3",
            ]);
        // Length counts UTF-16 units, as .NET strings do: an emoji outside the BMP is two.
        foreach (var value in new[] { J.N("""{"label": "😀😀"}"""), J.N("""{"label": "\ud83d\ude00\ud83d\ude00"}""") })
            Errors(value)[^1].ShouldBe("input_data.label: is 4 characters long, more than max_length 3");
        // Arabic-Indic digits sent as raw UTF-8 are not ECMA-262 digits.
        Errors(J.N("{\"ip\": \"\u0661\u0660.\u0660.\u0660.\u0661\"}")).ShouldHaveSingleItem().ShouldStartWith("input_data.ip: does not match");
    }

    [Fact]
    public void Type_words_and_patterns_written_with_escapes_in_a_template_mean_what_they_spell()
    {
        var template = J.O("""{"n": {"type": "\u0069nteger"}, "s": {"type": "string", "pattern": "^\u0061+$"}}""");
        TemplateValidator.Validate(template, J.N("""{"n": 2, "s": "aaa"}"""), "p").ShouldBeEmpty();
        TemplateValidator.Validate(template, J.N("""{"n": 2.5, "s": "ab"}"""), "p").Select(e => e.ToString())
            .ShouldBe(["p.n: must be an integer, not a number", "p.s: does not match ^a+$"]);
    }

    [Fact]
    public void A_template_edited_between_calls_is_judged_as_it_now_reads()
    {
        var template = J.O("""{"ip": {"type": "string", "pattern": "^\\d+(\\.\\d+){3}$", "required": true}}""");
        var value = J.O("""{"ip": "10.0.0.1"}""");
        TemplateValidator.Validate(template, value, "input_data").ShouldBeEmpty();
        template["ip"]!["pattern"] = "^192\\.";
        TemplateValidator.Validate(template, value, "input_data").ShouldHaveSingleItem().ToString().ShouldBe(@"input_data.ip: does not match ^192\.");
        template["ip"]!["type"] = "integer";
        TemplateValidator.Validate(template, value, "input_data").ShouldHaveSingleItem().ToString().ShouldBe("input_data.ip: must be an integer, not a string");
        template["ip"]!.AsObject().Remove("type");
        template["ip"]!.AsObject().Remove("pattern");
        TemplateValidator.Validate(template, value, "input_data").ShouldBeEmpty();
    }

    [Fact]
    public void Long_strings_are_judged_like_short_ones()
    {
        var template = J.O("""{"s": {"type": "string", "max_length": 299, "pattern": "^a+$", "choices": ["x"]}}""");
        var text = new string('a', 300);
        foreach (var value in new[] { new JsonObject { ["s"] = text }, J.O($$"""{"s": "{{text}}"}"""), J.O($$"""{"s": "\u0061{{text[1..]}}"}""") })
            TemplateValidator.Validate(template, value, "p").Select(e => e.Message).ShouldBe(
                [$"\"{text}\" is not one of [\"x\"]", "is 300 characters long, more than max_length 299"]);
    }

    [Fact]
    public void More_distinct_patterns_than_are_kept_compiled_are_each_still_applied()
    {
        for (var i = 0; i < 1200; i++)
        {
            var template = J.O($$$"""{"id": {"type": "string", "pattern": "^t{{{i}}}-[a-z]+$"}}""");
            TemplateValidator.Validate(template, J.O($$"""{"id": "t{{i}}-abc"}"""), "p").ShouldBeEmpty();
            TemplateValidator.Validate(template, J.O($$"""{"id": "t{{i + 1}}-abc"}"""), "p").ShouldHaveSingleItem().Message.ShouldBe($"does not match ^t{i}-[a-z]+$");
        }
    }

    [Fact]
    public void Errors_about_secret_fields_keep_their_shape_without_the_value()
    {
        var template = J.O("""
            {"pin": {"type": "integer", "secret": true, "min": 1000, "max": 9999},
             "keys": {"type": "array", "secret": true, "items": {"type": "string", "choices": ["x"], "pattern": "^k"}},
             "plain": {"type": "number", "choices": [1]}}
            """);
        TemplateValidator.Validate(template, J.N("""{"pin": 12, "keys": ["SECRETKEY"], "plain": 2}"""), "policy_settings").Select(e => e.ToString()).ShouldBe(
        [
            "policy_settings.pin: the secret value is less than the minimum 1000",
            "policy_settings.keys[0]: the secret value is not one of [\"x\"]",
            "policy_settings.keys[0]: does not match ^k",
            "policy_settings.plain: 2 is not one of [1]",
        ]);
    }

    [Fact]
    public void CheckTemplate_accepts_a_well_formed_template_with_extra_keys()
    {
        TemplateValidator.CheckTemplate(AllowlistTemplate, "policy_parameters_schema").ShouldBeEmpty();
        TemplateValidator.CheckTemplate(J.O("""{"x": {"type": "string", "default": "a", "example": "b", "secret": true, "description": "d"}}"""), "s").ShouldBeEmpty();
        TemplateValidator.CheckTemplate([], "s").ShouldBeEmpty();
    }

    [Theory]
    [InlineData("""{"x": "string"}""", "s.x", "must be a spec object")]
    [InlineData("""{"x": {"type": "text"}}""", "s.x.type", "\"text\" is not one of string|number|integer|boolean|object|array|any")]
    [InlineData("""{"x": {"type": 5}}""", "s.x.type", "is not one of")]
    [InlineData("""{"x": {"type": "string", "pattern": "[a-"}}""", "s.x.pattern", "not a valid regular expression")]
    [InlineData("""{"x": {"type": "string", "pattern": 5}}""", "s.x.pattern", "must be a string")]
    [InlineData("""{"x": {"choices": "a,b"}}""", "s.x.choices", "must be an array")]
    [InlineData("""{"x": {"min": "0"}}""", "s.x.min", "must be a number")]
    [InlineData("""{"x": {"max": true}}""", "s.x.max", "must be a number")]
    [InlineData("""{"x": {"min": 5, "max": 1}}""", "s.x.min", "greater than max 1")]
    [InlineData("""{"x": {"max_length": -1}}""", "s.x.max_length", "non-negative integer")]
    [InlineData("""{"x": {"max_length": 1.5}}""", "s.x.max_length", "non-negative integer")]
    [InlineData("""{"x": {"required": "yes"}}""", "s.x.required", "true or false")]
    [InlineData("""{"x": {"secret": 1}}""", "s.x.secret", "true or false")]
    [InlineData("""{"x": {"description": []}}""", "s.x.description", "must be a string")]
    [InlineData("""{"x": {"type": "array", "items": "string"}}""", "s.x.items", "must be a spec object")]
    [InlineData("""{"x": {"type": "array", "items": {"type": "nope"}}}""", "s.x.items.type", "is not one of")]
    [InlineData("""{"x": {"type": "string", "items": {"type": "string"}}}""", "s.x.items", "only applies to arrays")]
    [InlineData("""{"x": {"type": "object", "properties": []}}""", "s.x.properties", "must be an object mapping")]
    [InlineData("""{"x": {"type": "object", "properties": {"y": {"type": "bad"}}}}""", "s.x.properties.y.type", "is not one of")]
    [InlineData("""{"x": {"type": "number", "properties": {}}}""", "s.x.properties", "only applies to objects")]
    public void CheckTemplate_names_what_is_wrong_with_the_template(string template, string path, string message)
    {
        var error = TemplateValidator.CheckTemplate(J.O(template), "s").ShouldHaveSingleItem();
        error.Path.ShouldBe(path);
        error.Message.ShouldContain(message);
    }
}
