from harness.fakes.comfyui.server import main

main()
