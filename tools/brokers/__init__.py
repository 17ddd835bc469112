"""Development MQTT brokers for the demo and benches: a private Mosquitto (`local`), or amqtt
inside the process where no Mosquitto binary is installed (`embedded`)."""
