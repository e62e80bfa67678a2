/** Registers the MySQL/MariaDB connector. (Being built.) */
export {};
