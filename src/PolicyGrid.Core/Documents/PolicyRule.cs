using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Identity;
using PolicyGrid.Core.Querying;
using PolicyGrid.Core.Templates;

namespace PolicyGrid.Core.Documents;

/// <summary>The lifecycle words of a policy: retired ones answer 410, deprecated ones still run.</summary>
public static class PolicyStatus
{
    public const string Active = "active";
    public const string Deprecated = "deprecated";
    public const string Retired = "retired";
    public static readonly IReadOnlyList<string> All = [Active, Deprecated, Retired];

    /// <summary>The status a stored policy document names, read without parsing the whole rule; null when it names none.</summary>
    public static string? Of(System.Text.Json.Nodes.JsonObject body) =>
        body?["status"] is System.Text.Json.Nodes.JsonValue v && v.TryGetValue<string>(out var status) ? status : null;
}

/// <summary>
/// A registered, versioned policy (the contract's PolicyRule). Built only through
/// <see cref="FromJson"/>, which validates every field and fills the rest, so <see cref="ToJson"/>
/// always carries every field of the contract.
/// </summary>
public sealed record PolicyRule : IDocument<PolicyRule>
{
    public static string Collection => Ports.Collections.Policies;

    public static IReadOnlySet<string> IdentityFields { get; } = new HashSet<string>(StringComparer.Ordinal)
        { "policy_rule_uri", "name", "version", "release_tag" };

    public string PolicyRuleUri { get; init; } = "";

    public string Id => PolicyRuleUri;

    public string Name { get; init; } = "";
    public string Version { get; init; } = "";
    public string ReleaseTag { get; init; } = "";
    public JsonObject Metadata { get; init; } = [];
    /// <summary>Comma separated, as the reference stores it (a list given on input is joined with ",").</summary>
    public string Tags { get; init; } = "";
    /// <summary>Where the bundle is: <c>bundle://sha256/…</c>, an http(s) URL or (where allowed) file://.</summary>
    public string Code { get; init; } = "";
    /// <summary>
    /// The sha256 of the bundle <see cref="Code"/> named when the registry loaded it ("" for documents stored
    /// before the field existed). An unpinned http(s) URL may serve other bytes later; every process that
    /// fetches it refuses bytes that do not have this hash, so one revision always runs one code.
    /// </summary>
    public string CodeSha256 { get; init; } = "";
    public string CodeType { get; init; } = "";
    /// <summary>The runtime kind this server's runtime runs (a class <c>AIOSv1PolicyRule</c> in <c>code/function.py</c>).</summary>
    public const string PythonClassV1 = "python_class_v1";

    /// <summary>Runtime kind, e.g. <c>python_class_v1</c>.</summary>
    public string Type { get; init; } = "";
    public JsonObject PolicyInputSchema { get; init; } = [];
    public JsonObject PolicyOutputSchema { get; init; } = [];
    public JsonObject PolicySettingsSchema { get; init; } = [];
    public JsonObject PolicyParametersSchema { get; init; } = [];
    public JsonObject PolicySettings { get; init; } = [];
    public JsonObject PolicyParameters { get; init; } = [];
    /// <summary>List of <c>{name, description, schema}</c>, each entry complete.</summary>
    public JsonArray ManagementCommandsSchema { get; init; } = [];
    public string Description { get; init; } = "";
    public JsonObject FunctionalityData { get; init; } = [];
    public JsonObject ResourceEstimates { get; init; } = [];
    public string Status { get; init; } = PolicyStatus.Active;
    public string CreatedAt { get; init; } = "";
    public string UpdatedAt { get; init; } = "";

    public PolicyUri Uri => new(Name, Version, ReleaseTag);
    public bool IsRetired => Status == PolicyStatus.Retired;
    public bool IsDeprecated => Status == PolicyStatus.Deprecated;

    /// <summary>Throws a 422 when the policy's kind is not the one this server's runtime runs (<see cref="PythonClassV1"/>).</summary>
    public void EnsureRunnableKind()
    {
        if (Type != PythonClassV1)
            throw Problems.PolicyError($"policy '{PolicyRuleUri}' is of type '{Type}', which this runtime does not run; it runs {PythonClassV1}");
    }

    /// <summary>
    /// Validates a create body or an updated document: required <c>name, version, release_tag,
    /// code, type</c>; every other field typed and defaulted; <c>policy_rule_uri</c> derived (a
    /// given one that disagrees is a 400 naming it); templates well-formed; settings and
    /// parameters satisfying their templates. Throws <see cref="Problems.Validation(IReadOnlyList{FieldError})"/>.
    /// </summary>
    public static PolicyRule FromJson(JsonObject body)
    {
        ArgumentNullException.ThrowIfNull(body);
        var f = new DocumentFields(body);
        var name = f.RequiredString("name");
        var version = f.RequiredString("version");
        var releaseTag = f.RequiredString("release_tag");
        var givenUri = f.String("policy_rule_uri");
        var uri = DeriveUri(f, name, version, releaseTag, givenUri, "policy_rule_uri", "name", "version", "release_tag");

        var rule = new PolicyRule
        {
            PolicyRuleUri = uri,
            Name = name,
            Version = version,
            ReleaseTag = releaseTag,
            Metadata = f.Object("metadata"),
            Tags = ReadTags(f, body),
            Code = f.RequiredString("code"),
            CodeSha256 = ReadCodeSha256(f),
            CodeType = f.String("code_type"),
            Type = f.RequiredString("type"),
            PolicyInputSchema = Template(f, "policy_input_schema"),
            PolicyOutputSchema = Template(f, "policy_output_schema"),
            PolicySettingsSchema = Template(f, "policy_settings_schema"),
            PolicyParametersSchema = Template(f, "policy_parameters_schema"),
            PolicySettings = f.Object("policy_settings"),
            PolicyParameters = f.Object("policy_parameters"),
            ManagementCommandsSchema = ReadCommands(f),
            Description = f.String("description"),
            FunctionalityData = f.Object("functionality_data"),
            ResourceEstimates = f.Object("resource_estimates"),
            Status = f.Choice("status", PolicyStatus.Active, PolicyStatus.All),
            CreatedAt = f.Timestamp("created_at"),
            UpdatedAt = f.Timestamp("updated_at"),
        };

        // Values are only checked against templates that are themselves well-formed, so a broken
        // template produces its own clear error instead of a cascade of confusing ones.
        if (!f.Errors.Any(e => e.Path.StartsWith("policy_settings_schema", StringComparison.Ordinal)))
            f.AddRange(TemplateValidator.Validate(rule.PolicySettingsSchema, rule.PolicySettings, "policy_settings"));
        if (!f.Errors.Any(e => e.Path.StartsWith("policy_parameters_schema", StringComparison.Ordinal)))
            f.AddRange(TemplateValidator.Validate(rule.PolicyParametersSchema, rule.PolicyParameters, "policy_parameters"));
        // An address that pins a hash itself and a code_sha256 naming another can never both hold.
        if (rule.CodeSha256.Length > 0 && CodePin.Of(rule.Code) is { } pinned && pinned != rule.CodeSha256)
            f.Add("code_sha256", $"is {rule.CodeSha256}, but code '{rule.Code}' pins sha256 {pinned}");
        f.ThrowIfInvalid();
        return rule;
    }

    /// <summary>The recorded sha256, or null when the document has none (stored before the field existed, or not yet loaded).</summary>
    public string? ExpectedCodeSha256 => CodeSha256.Length > 0 ? CodeSha256 : null;

    /// <summary>
    /// The <c>code_sha256</c> a policy document (or a function's snapshot of one) recorded, or null when it has none:
    /// stored before the field existed, or never loaded.
    /// </summary>
    public static string? RecordedCodeSha256(JsonObject document) =>
        document?["code_sha256"] is JsonValue recorded && recorded.TryGetValue<string>(out var sha) && sha.Length > 0 ? sha : null;

    private static string ReadCodeSha256(DocumentFields f)
    {
        var sha = f.String("code_sha256").Trim().ToLowerInvariant();
        if (sha.Length > 0 && !CodePin.IsSha256(sha)) { f.Add("code_sha256", "must be a sha256: 64 hex digits, or empty"); return ""; }
        return sha;
    }

    public JsonObject ToJson() => new()
    {
        ["policy_rule_uri"] = PolicyRuleUri,
        ["name"] = Name,
        ["version"] = Version,
        ["release_tag"] = ReleaseTag,
        ["metadata"] = Metadata.DeepClone(),
        ["tags"] = Tags,
        ["code"] = Code,
        ["code_sha256"] = CodeSha256,
        ["code_type"] = CodeType,
        ["type"] = Type,
        ["policy_input_schema"] = PolicyInputSchema.DeepClone(),
        ["policy_output_schema"] = PolicyOutputSchema.DeepClone(),
        ["policy_settings_schema"] = PolicySettingsSchema.DeepClone(),
        ["policy_parameters_schema"] = PolicyParametersSchema.DeepClone(),
        ["policy_settings"] = PolicySettings.DeepClone(),
        ["policy_parameters"] = PolicyParameters.DeepClone(),
        ["management_commands_schema"] = ManagementCommandsSchema.DeepClone(),
        ["description"] = Description,
        ["functionality_data"] = FunctionalityData.DeepClone(),
        ["resource_estimates"] = ResourceEstimates.DeepClone(),
        ["status"] = Status,
        ["created_at"] = CreatedAt,
        ["updated_at"] = UpdatedAt,
    };

    /// <summary>
    /// Sets <c>created_at</c> (kept from <paramref name="existing"/> on update, else now) and
    /// <c>updated_at</c> (now). Call with <c>existing: null</c> on create.
    /// </summary>
    public PolicyRule WithTimestamps(PolicyRule? existing, DateTimeOffset now) => this with
    {
        CreatedAt = Timestamps.CreatedAt(existing?.CreatedAt, now),
        UpdatedAt = Timestamps.Format(now),
    };

    /// <summary>
    /// The policy as one call runs it: <paramref name="settings"/> and <paramref name="parameters"/>
    /// (either may be null) merged key by key over the stored ones, given keys winning, then checked
    /// against the templates. Errors are named after the call's fields (<c>parameters.local_allowlist[2]</c>).
    /// </summary>
    public PolicyRule WithOverrides(JsonObject? settings, JsonObject? parameters)
    {
        if (settings is null && parameters is null) return this;
        var mergedSettings = Merge(PolicySettings, settings);
        var mergedParameters = Merge(PolicyParameters, parameters);
        var errors = new List<FieldError>();
        if (settings is not null) errors.AddRange(TemplateValidator.Validate(PolicySettingsSchema, mergedSettings, "settings"));
        if (parameters is not null) errors.AddRange(TemplateValidator.Validate(PolicyParametersSchema, mergedParameters, "parameters"));
        if (errors.Count > 0) throw Problems.Validation(errors);
        return this with { PolicySettings = mergedSettings, PolicyParameters = mergedParameters };
    }

    /// <summary>
    /// What a create (<paramref name="before"/> null) or an update writes that <see cref="FromJson"/> lets pass because
    /// older servers stored it, checked only where the value is written, so a policy stored with one keeps running and
    /// can still be retired:
    /// <c>resource_estimates.timeout_seconds</c>, the deadline of a call or job that names none, must be a number of
    /// seconds of at least one tick of the clock (0.0000001); two <c>management_commands_schema</c> entries may not share
    /// a name (management takes the first, so the second's schema would never be checked).
    /// </summary>
    public IReadOnlyList<FieldError> WriteErrors(PolicyRule? before)
    {
        var errors = new List<FieldError>();
        var timeout = ResourceEstimates["timeout_seconds"];
        if ((before is null || !JsonValues.DeepEquals(before.ResourceEstimates["timeout_seconds"], timeout))
            && !DocumentFields.IsNull(timeout) && TimeoutEstimate(ResourceEstimates) is null)
        {
            var shown = timeout is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number ? v.ToJsonString() : JsonValues.Describe(timeout);
            errors.Add(new FieldError("resource_estimates.timeout_seconds",
                $"must be a number of seconds, at least 0.0000001 (one tick of the clock), not {shown}: it is the deadline of a call or job that names none"));
        }
        errors.AddRange(ResourceErrors(before));
        if (before is null || !JsonValues.DeepEquals(before.ManagementCommandsSchema, ManagementCommandsSchema))
        {
            var first = new Dictionary<string, int>(StringComparer.Ordinal);
            for (var i = 0; i < ManagementCommandsSchema.Count; i++)
            {
                if (ManagementCommandsSchema[i]?["name"] is not JsonValue n || !n.TryGetValue<string>(out var name)) continue;
                if (first.TryGetValue(name, out var earlier))
                    errors.Add(new FieldError($"management_commands_schema[{i}].name",
                        $"'{name}' is already the name of management_commands_schema[{earlier}]; management runs the first command of a name, so this one would never be used"));
                else first[name] = i;
            }
        }
        return errors;
    }

    /// <summary>The least memory a container runtime starts a container with (6 MiB): a job's pod asking for less never starts.</summary>
    public const long MinMemoryBytes = 6L << 20;

    /// <summary>
    /// <c>resource_estimates</c> <c>memory</c>, <c>memory_mb</c>, <c>cpu</c> and <c>vcpus</c> as jobs hand them to Kubernetes
    /// (requests and limits of the job's pod), where they are written: an amount Kubernetes cannot read, or memory under
    /// what any container starts with, left every job of the policy unable to start (a bare <c>512</c> was 512 bytes).
    /// </summary>
    private IEnumerable<FieldError> ResourceErrors(PolicyRule? before)
    {
        foreach (var key in (string[])["memory", "memory_mb", "cpu", "vcpus"])
        {
            var value = ResourceEstimates[key];
            if (DocumentFields.IsNull(value) || (before is not null && JsonValues.DeepEquals(before.ResourceEstimates[key], value))) continue;
            var number = value is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number ? v.GetValue<double>() : (double?)null;
            var text = value is JsonValue t && t.TryGetValue<string>(out var s) ? s.Trim() : null;
            var shown = number is not null ? value!.ToJsonString() : JsonValues.Describe(value);
            var problem = key switch
            {
                "memory" when number is { } bytes => bytes >= MinMemoryBytes && bytes == Math.Floor(bytes) ? null
                    : $"as a number counts bytes and must be a whole number of at least {MinMemoryBytes} (6Mi, the least a container starts "
                      + $"with), not {shown}: write megabytes as \"{shown}Mi\" (or give memory_mb), gigabytes as \"1Gi\"",
                "memory" => text is not null && QuantityNotation.TryParse(text, out var amount) && amount >= MinMemoryBytes ? null
                    : $"must be an amount of memory as Kubernetes writes it, such as \"512Mi\" or \"1Gi\" (at least \"6Mi\"), or a whole number of bytes, not {shown}",
                "memory_mb" => number >= MinMemoryBytes >> 20 ? null
                    : $"must be a number of MiB, at least {MinMemoryBytes >> 20}, not {shown}",
                _ => number >= 0.001 || (number is null && text is not null && QuantityNotation.TryParse(text, out var cores) && cores >= 0.001) ? null
                    : $"must be a number of cores (0.5) or an amount of CPU as Kubernetes writes it (\"500m\"), at least 0.001 (\"1m\"), not {shown}",
            };
            if (problem is not null) yield return new FieldError($"resource_estimates.{key}", problem + ": jobs of this policy ask Kubernetes for it");
        }
    }

    /// <summary>
    /// <c>resource_estimates.timeout_seconds</c> as a deadline, or null when it is absent or unusable (not a number, not
    /// more than 0, or under one tick of the clock, which would be a deadline of zero).
    /// </summary>
    public static TimeSpan? TimeoutEstimate(JsonObject resourceEstimates)
    {
        ArgumentNullException.ThrowIfNull(resourceEstimates);
        if (!JsonValues.TryDouble(resourceEstimates["timeout_seconds"], out var seconds) || !(seconds > 0)) return null;
        var deadline = seconds >= TimeSpan.MaxValue.TotalSeconds ? TimeSpan.MaxValue : TimeSpan.FromSeconds(seconds);
        return deadline > TimeSpan.Zero ? deadline : null;
    }

    /// <summary>Checks a call's input against <see cref="PolicyInputSchema"/>; a 400 naming <c>input_data.…</c> paths.</summary>
    public void EnsureValidInput(JsonNode? inputData) => TemplateValidator.Ensure(PolicyInputSchema, inputData, "input_data");

    private static JsonObject Merge(JsonObject stored, JsonObject? given)
    {
        var merged = (JsonObject)stored.DeepClone();
        if (given is null) return merged;
        foreach (var (key, value) in given) merged[key] = value?.DeepClone();
        return merged;
    }

    /// <summary>The document as reads and queries answer it: secret settings/parameters as "***".</summary>
    public JsonObject ToRedactedJson() => TemplateSecrets.RedactPolicyRule(ToJson());

    /// <summary>
    /// Derives <c>{name}:{version}-{release_tag}</c> after checking each part; a given URI that
    /// disagrees is an error on <paramref name="uriField"/>. Shared with <see cref="Graph"/>.
    /// </summary>
    internal static string DeriveUri(DocumentFields f, string name, string version, string tag, string givenUri,
        string uriField, string nameField, string versionField, string tagField)
    {
        if (name.Length == 0 || version.Length == 0 || tag.Length == 0) return givenUri; // already reported as missing
        var parts = new PolicyUri(name, version, tag);
        var problems = parts.Check(nameField, versionField, tagField);
        if (problems.Count > 0) { f.AddRange(problems); return givenUri; }
        var derived = parts.ToString();
        if (givenUri.Length > 0 && givenUri != derived)
        {
            // Accept the %-encoded form of the same URI: paths carry it that way.
            var decoded = System.Uri.UnescapeDataString(givenUri);
            if (decoded != derived)
                f.Add(uriField, $"'{givenUri}' disagrees with {nameField}, {versionField} and {tagField}, which make '{derived}'");
        }
        return derived;
    }

    internal static JsonObject Template(DocumentFields f, string field)
    {
        var template = f.Object(field);
        f.AddRange(TemplateValidator.CheckTemplate(template, f.PathOf(field)));
        return template;
    }

    private static string ReadTags(DocumentFields f, JsonObject body)
    {
        // The reference stores a comma separated string; a list is the natural thing to send, so accept it too.
        if (body["tags"] is JsonArray) return string.Join(",", f.StringList("tags").Select(t => t.Trim()));
        return f.String("tags");
    }

    private static JsonArray ReadCommands(DocumentFields f)
    {
        var given = f.Array("management_commands_schema");
        var result = new JsonArray();
        for (var i = 0; i < given.Count; i++)
        {
            var path = $"management_commands_schema[{i}]";
            if (given[i] is not JsonObject command)
            {
                f.Errors.Add(new FieldError(path, $"must be an object {{name, description, schema}}, not {JsonValues.Describe(given[i])}"));
                continue;
            }
            var c = new DocumentFields(command, path);
            var name = c.RequiredString("name");
            var description = c.String("description");
            var schema = Template(c, "schema");
            var readOnly = command.ContainsKey("read_only") ? c.Boolean("read_only", false) : (bool?)null;
            f.AddRange(c.Errors);
            var entry = (JsonObject)command.DeepClone();
            entry["name"] = name;
            entry["description"] = description;
            entry["schema"] = schema;
            if (readOnly is { } flag) entry["read_only"] = flag;
            result.Add(entry);
        }
        return result;
    }
}
