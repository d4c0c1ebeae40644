"""Rule entry point (also under torchrun) for tokenizer / pretrain / finetune / evaluate."""

from neurossl.stages import main

if __name__ == "__main__":
    main()
