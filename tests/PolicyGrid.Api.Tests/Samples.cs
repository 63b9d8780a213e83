namespace PolicyGrid.Api.Tests;

/// <summary>The repository's samples/policies, found from the test binary's location.</summary>
public static class Samples
{
    public static string Policy(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "samples", "policies", name);
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException($"samples/policies/{name} not found above {AppContext.BaseDirectory}");
    }
}
