using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("PolicyGrid.Sdk.Tests")]
[assembly: InternalsVisibleTo("PolicyGrid.Bench")]
