import subprocess
import sys
import textwrap


def test_validation_imports_no_torch(tmp_path):
    graph = tmp_path / "g.yaml"
    graph.write_text("nodes:\n  i: {type: SolidImage, value: 0.5}\noutputs: {image: $i.image}\n")
    script = textwrap.dedent(f"""
        import sys
        from nodegraph import REGISTRY, load_graph
        from nodegraph.cli import main
        REGISTRY.all()                      # every built-in node module and plugin
        load_graph({str(graph)!r})
        assert main(["validate", {str(graph)!r}]) == 0
        assert main(["show", {str(graph)!r}]) == 0
        loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print("TORCH:", loaded)
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "TORCH: []" in result.stdout
