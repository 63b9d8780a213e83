using Python.Runtime;
using PolicyGrid.Sdk.Client;

namespace PolicyGrid.Sdk.Evaluation;

/// <summary>
/// CPython embedded in this process through pythonnet, started once per process. Policies run
/// through a small host module: JSON text crosses the boundary (one string each way), which is
/// cheaper than converting a dictionary field by field through the dynamic binder.
/// </summary>
internal static class EmbeddedPython
{
    private static readonly Lock Gate = new();
    private static PyObject? _host;

    /// <summary>Where libpython is looked for when neither the option nor PYTHONNET_PYDLL names it.</summary>
    public static readonly IReadOnlyList<string> ProbedLibraries =
    [
        "/usr/lib/x86_64-linux-gnu/libpython3.11.so",
        "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0",
        "/usr/lib/aarch64-linux-gnu/libpython3.11.so.1.0",
        "/usr/lib/x86_64-linux-gnu/libpython3.12.so.1.0",
        "/usr/lib64/libpython3.11.so.1.0",
    ];

    /// <summary>The host module, starting the interpreter on first use.</summary>
    public static PyObject Host(string? library)
    {
        lock (Gate)
        {
            if (_host is not null) return _host;
            if (!PythonEngine.IsInitialized)
            {
                Python.Runtime.Runtime.PythonDLL = ResolveLibrary(library);
                try
                {
                    PythonEngine.Initialize();
                }
                catch (Exception e) when (e is DllNotFoundException or BadImageFormatException or TypeInitializationException or MissingMethodException)
                {
                    throw new PolicyGridApiException(503, "backend_unavailable",
                        $"cannot start embedded Python from {Python.Runtime.Runtime.PythonDLL}: {e.Message}. Set LocalPolicyEvaluatorOptions.PythonLibrary or PYTHONNET_PYDLL to a libpython3.x.so", null, e);
                }
                // Other threads take the GIL per call; this one must not keep it.
                PythonEngine.BeginAllowThreads();
            }
            using (Py.GIL())
            {
                _host = PyModule.FromString("_policygrid_inprocess_host", HostSource);
            }
            return _host;
        }
    }

    private static string ResolveLibrary(string? library)
    {
        if (!string.IsNullOrWhiteSpace(library)) return library;
        var env = Environment.GetEnvironmentVariable("PYTHONNET_PYDLL");
        if (!string.IsNullOrWhiteSpace(env)) return env;
        return ProbedLibraries.FirstOrDefault(File.Exists)
            ?? throw new PolicyGridApiException(503, "backend_unavailable",
                $"no libpython found (looked at {string.Join(", ", ProbedLibraries)}); set LocalPolicyEvaluatorOptions.PythonLibrary or PYTHONNET_PYDLL");
    }

    /// <summary>Turns a Python exception into the contract's policy_error, naming the exception type.</summary>
    public static PolicyGridApiException PolicyError(PythonException e, string what) =>
        new(422, "policy_error", $"{what}{e.Type.Name}: {e.Message}", null, e);

    private const string HostSource = """
        import importlib.util
        import json
        import sys

        _modules = {}


        def _module(name, function_py, code_dir):
            module = _modules.get(function_py)
            if module is None:
                spec = importlib.util.spec_from_file_location(name, function_py)
                module = importlib.util.module_from_spec(spec)
                # Sibling modules in code/ are importable; appended so they never shadow the host's own.
                if code_dir not in sys.path:
                    sys.path.append(code_dir)
                spec.loader.exec_module(module)
                sys.modules[name] = module
                _modules[function_py] = module
            return module


        class Instance:
            __slots__ = ("obj", "parameters", "context", "eval")

            def __init__(self, obj, parameters, context=None):
                self.obj = obj
                self.parameters = parameters
                self.context = context = {} if context is None else context
                # The hot path: a closure over locals, so a call does no attribute or global lookups.
                loads, dumps, policy_eval = json.loads, json.dumps, obj.eval

                def call(input_json, parameters_json=None):
                    result = policy_eval(parameters if parameters_json is None else loads(parameters_json), loads(input_json), context)
                    if type(result) is not dict and not isinstance(result, dict):
                        raise TypeError(f"eval returned {type(result).__name__}, expected a dict")
                    return dumps(result)

                self.eval = call

            def management(self, action, data_json):
                method = getattr(self.obj, "management", None)
                if method is None:
                    raise AttributeError("the policy class has no management method")
                return json.dumps(method(action, json.loads(data_json)))


        def load(name, function_py, code_dir, rule_id, settings_json, parameters_json, context=None):
            cls = getattr(_module(name, function_py, code_dir), "AIOSv1PolicyRule", None)
            if not isinstance(cls, type):
                raise LookupError("code/function.py defines no class AIOSv1PolicyRule")
            return Instance(cls(rule_id, json.loads(settings_json), json.loads(parameters_json)), json.loads(parameters_json), context)
        """;
}
