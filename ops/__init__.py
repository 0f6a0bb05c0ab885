"""Operations: logging setup, healthcheck, gateway restart clients, demo clock, ibsim launcher."""
