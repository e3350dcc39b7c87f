"""riscv-kvm-rig: boots RISC-V KVM host kernels under QEMU and tests them."""

__version__ = "0.1.0"
